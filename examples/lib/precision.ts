// --precision of the scripts: 'f32' (everything in float32) or 'f16-mixed' (float32 master weights, the
// forward under autocast('float16'), dynamic loss scaling with optim.GradScaler between backward and the
// optimizer step). Also the startup check that the adapter can store float16 at all.
import { autocast, config, deviceInfo, OpError, tensor, type DeviceName } from '../../index.js';
import { UsageError } from './cli.js';

export const PRECISIONS = ['f32', 'f16-mixed'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** What --precision f16-mixed means, for the scripts' --help. */
export const F16_MIXED_HELP =
  "'f16-mixed': float32 master weights, the forward in float16 (autocast) with dynamic loss scaling; needs the adapter's shader-f16 on webgpu";

/** fn (a forward) in the precision's compute mode: under autocast('float16') for f16-mixed. */
export function inPrecision<T>(precision: Precision, fn: () => Promise<T>): Promise<T> {
  return precision === 'f16-mixed' ? autocast('float16', fn) : fn();
}

/**
 * Refuses --precision f16-mixed where the device cannot store float16 (a webgpu adapter without the
 * 'shader-f16' feature, or with it turned off by DAWNGRAD_DISABLE_FEATURES), saying what to do; called
 * before anything is written. The device itself answers (core decides what it supports).
 */
export function checkPrecision(precision: Precision, device: DeviceName): void {
  if (precision !== 'f16-mixed') return;
  try {
    tensor([0], { dtype: 'float16', device }).dispose();
  } catch (e) {
    if (!(e instanceof OpError)) throw e;
    const info = deviceInfo();
    const why = config().disableFeatures.includes('shader-f16')
      ? 'which DAWNGRAD_DISABLE_FEATURES turns off'
      : `which adapter '${'adapter' in info ? info.adapter : 'none'}' does not have`;
    throw new UsageError(
      `--precision f16-mixed needs the WebGPU feature 'shader-f16' (float16 storage), ${why}; train with --precision f32 (the default), or --device cpu for the float16 reference (slow)`,
    );
  }
}
