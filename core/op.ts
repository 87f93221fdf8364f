// Fused ops as records. An op declares, in its folder, once: its argument checks, its kernels (each a
// float64 cpu function plus named WebGPU variants with where they apply), its backward rule and its
// tolerance per dtype. Core does the rest: it picks the backend from the tensors' device and the
// variant from the adapter (or config().variants), so no op branches on a device. CONTRIBUTING.md
// shows how to add an op, a variant or a dtype.
import { mayTune, shapeBucket, tune, tunedChoice } from './autotune.js';
import { record } from './autograd.js';
import { autocastDtype, type AutocastPolicy } from './autocast.js';
import type { DeviceName, View } from './backend.js';
import { roundFloat16View } from './cpu.js';
import { config, onConfigure } from './config.js';
import { gpuBackend, gpuRuntime } from './device.js';
import type { DType } from './dtype.js';
import { OpError } from './shape.js';
import { Tensor } from './tensor.js';

/** An op's test tolerance: relative and absolute error, and the finite-difference step (cpu gradcheck). */
export interface Tolerance {
  rtol?: number;
  atol?: number;
  eps?: number;
}

/** What a variant's applicability and preference may look at. */
export interface Hardware {
  /** A CPU emulation (lavapipe, SwiftShader), or config().profile says so: barriers and shared memory are dear. */
  readonly software: boolean;
  readonly maxWorkgroupsPerDimension: number;
  readonly maxStorageBuffersPerShaderStage: number;
  /** The optional features enabled on the device ('subgroups', 'timestamp-query', 'shader-f16'). */
  readonly features: ReadonlySet<string>;
  /** Invocations per subgroup, smallest and largest, when 'subgroups' is enabled. */
  readonly subgroupSize: { readonly min: number; readonly max: number } | null;
}

/** One WebGPU implementation of a kernel. */
export interface Variant<A> {
  readonly name: string;
  /**
   * Whether it can run these arguments on this adapter (features, shape limits); default: always. A
   * string says why not (it goes into the error when no variant fits), as `false` does without a reason.
   */
  readonly fits?: (args: A, hw: Hardware) => boolean | string;
  /** Whether the automatic choice takes it: the first variant that fits and prefers wins, else the first that fits. */
  readonly prefer?: (args: A, hw: Hardware) => boolean;
  /** Packs uniforms and launches (core/webgpu/launch.ts). */
  readonly run: (args: A) => void;
}

/** One computation with a float64 cpu reference and its WebGPU variants. */
export interface Kernel<A> {
  readonly name: string;
  /** The config().variants key that forces a variant; kernels of one family share variant names. */
  readonly family: string;
  readonly cpu: (args: A) => void;
  readonly webgpu: readonly Variant<A>[];
  /**
   * Its variants read and write float16 tensors (computing in f32, as PyTorch's CUDA kernels do). An op
   * whose kernels do not all say so still accepts float16: defineOp runs it in float32 between casts.
   */
  readonly float16?: true;
}

/** The tolerances the tests check an op with, per dtype (float64: cpu gradcheck; float32: webgpu vs cpu). */
export type OpTolerance = Partial<Record<DType, Tolerance>>;

/** What an op's forward returns: the output and, for autograd, its inputs and what backward reads. */
export interface Forward<Info, R = Tensor> {
  readonly out: Tensor;
  readonly inputs?: readonly Tensor[];
  readonly saved?: readonly Tensor[];
  readonly info?: Info;
  /** Runs on the recorded output (a reshape, freeing temporaries the graph now holds); returns what the op returns. */
  readonly after?: (recorded: Tensor) => R;
}

export interface OpSpec<Args extends unknown[], Info, R = Tensor> {
  readonly name: string;
  /** Throws an OpError naming the argument and what to do. */
  readonly check: (...args: Args) => void;
  /** Runs the kernels (dispatch) on checked arguments. */
  readonly forward: (...args: Args) => Forward<Info, R>;
  /** Gradient per input from the output's gradient, the saved tensors and the forward's info; null when the op is not differentiable. */
  readonly backward: ((g: Tensor, saved: readonly Tensor[], info: Info) => readonly (Tensor | null)[]) | null;
  readonly kernels: readonly Kernel<never>[];
  readonly tolerance: OpTolerance;
  /** Its precision under autocast (core/autocast.ts): 'lower' (float16 inputs) or 'float32'; unset: as given. */
  readonly autocast?: AutocastPolicy;
}

/** What the registry keeps of every op (tests and CONTRIBUTING.md's table read it). */
export interface OpRecord {
  readonly name: string;
  readonly kernels: readonly Kernel<never>[];
  readonly tolerance: OpTolerance;
}

const OPS = new Map<string, OpRecord>();
const KERNELS = new Map<string, Kernel<never>>();

function register(kernel: Kernel<never>): void {
  const seen = KERNELS.get(kernel.name);
  if (seen && seen !== kernel) throw new Error(`kernel '${kernel.name}' is declared twice`);
  KERNELS.set(kernel.name, kernel);
}

/** Declares a kernel (its name must be unique). */
export function defineKernel<A>(kernel: Kernel<A>): Kernel<A> {
  if (!kernel.webgpu.length) throw new Error(`kernel '${kernel.name}' has no webgpu variant`);
  register(kernel as Kernel<never>);
  return kernel;
}

function registerOp({ name, kernels, tolerance }: OpRecord): void {
  if (OPS.has(name)) throw new Error(`op '${name}' is declared twice`);
  OPS.set(name, { name, kernels, tolerance });
  kernels.forEach(register);
}

/**
 * Declares an op and returns the function users call: check, forward, and the backward recorded for
 * autograd. The function returns the recorded output, or what the forward's `after` makes of it.
 */
export function defineOp<Args extends unknown[], Info = undefined, R = Tensor>(
  spec: OpSpec<Args, Info, R>,
): (...args: Args) => R {
  registerOp(spec);
  const { name, check, forward, backward } = spec;
  const run = (...args: Args): R => {
    check(...args);
    const f = forward(...args);
    const info = f.info as Info;
    const out =
      backward && f.inputs?.length
        ? record(name, f.out, f.inputs, (g, saved) => [...backward(g, saved, info)], f.saved ?? [])
        : f.out;
    return f.after ? f.after(out) : (out as R);
  };
  return autocasting(spec.autocast, halfThroughFloat32(spec.kernels, run));
}

/** fn with its float tensor arguments cast as `policy` asks while autocast is on. */
function autocasting<Args extends unknown[], R>(
  policy: AutocastPolicy | undefined,
  fn: (...args: Args) => R,
): (...args: Args) => R {
  if (!policy) return fn;
  return (...args: Args) => {
    const lower = autocastDtype();
    if (!lower) return fn(...args);
    const from = policy === 'lower' ? 'float32' : lower;
    const to = policy === 'lower' ? lower : 'float32';
    return fn(...(args.map((a) => mapTensors(a, (t) => (t.dtype === from ? t.astype(to) : t))) as Args));
  };
}

/** Applies fn to the tensors among an op's arguments or results: top level, in arrays, or fields of plain objects. */
function mapTensors<T>(value: T, fn: (t: Tensor) => Tensor): T {
  if (value instanceof Tensor) return fn(value) as T;
  if (Array.isArray(value)) return value.map((v) => (v instanceof Tensor ? fn(v) : v)) as T;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, v instanceof Tensor ? fn(v) : v])) as T;
  return value;
}

/**
 * The op as users call it. With kernels that all handle float16 (Kernel.float16) that is `run` itself;
 * otherwise float16 tensors go in as float32 copies (differentiable casts) and the float results come back
 * as float16, so every op accepts float16 and its gradients flow back in float16.
 */
function halfThroughFloat32<Args extends unknown[], R>(
  kernels: readonly Kernel<never>[],
  run: (...args: Args) => R,
): (...args: Args) => R {
  if (kernels.every((k) => k.float16)) return run;
  return (...args: Args) => {
    let half = false;
    const widened = args.map((a) =>
      mapTensors(a, (t) => {
        if (t.dtype !== 'float16') return t;
        half = true;
        return t.astype('float32');
      }),
    ) as Args;
    if (!half) return run(...args);
    return mapTensors(run(...widened), (t) => (t.dtype === 'float32' ? t.astype('float16') : t));
  };
}

/** An op with several outputs: its forward records one joint node for all of them (recordJoint), which carries the backward rule. */
export interface JointOpSpec<Args extends unknown[], R> {
  readonly name: string;
  readonly check: (...args: Args) => void;
  readonly forward: (...args: Args) => R;
  readonly kernels: readonly Kernel<never>[];
  readonly tolerance: OpTolerance;
  readonly autocast?: AutocastPolicy;
}

export function defineJointOp<Args extends unknown[], R>(spec: JointOpSpec<Args, R>): (...args: Args) => R {
  registerOp(spec);
  const { check, forward } = spec;
  return autocasting(
    spec.autocast,
    halfThroughFloat32(spec.kernels, (...args: Args) => {
      check(...args);
      return forward(...args);
    }),
  );
}

/** Every declared op, by name (tests and CONTRIBUTING.md enumerate them). */
export function registeredOps(): ReadonlyMap<string, OpRecord> {
  return OPS;
}

/** Every declared kernel, by name. */
export function registeredKernels(): ReadonlyMap<string, Kernel<never>> {
  return KERNELS;
}

let hardwareSeen: { rt: ReturnType<typeof gpuRuntime>; hw: Hardware } | null = null;

/** The adapter as the variant choices see it (kept until the runtime or the settings change: every dispatch asks). */
export function hardware(): Hardware {
  const rt = gpuRuntime();
  if (hardwareSeen?.rt !== rt) hardwareSeen = { rt, hw: describeHardware(rt) };
  return hardwareSeen.hw;
}

function describeHardware(rt: ReturnType<typeof gpuRuntime>): Hardware {
  const limits = rt?.info.limits;
  return {
    software: rt ? rt.isSoftware : config().profile !== 'hardware',
    maxWorkgroupsPerDimension: limits?.maxComputeWorkgroupsPerDimension ?? 65535,
    maxStorageBuffersPerShaderStage: limits?.maxStorageBuffersPerShaderStage ?? 8,
    features: new Set(rt?.info.features.filter((f) => rt.hasFeature(f)) ?? []),
    subgroupSize: rt?.info.subgroupSize ?? null,
  };
}

let forcedChecked = false;
onConfigure(() => {
  forcedChecked = false;
  hardwareSeen = null; // the profile decides `software`
});

/** config().variants names only families and variants that exist (checked at the first dispatch, once all ops are loaded). */
function checkForcedVariants(): void {
  if (forcedChecked) return;
  const families = new Map<string, Set<string>>();
  for (const k of KERNELS.values()) {
    const names = families.get(k.family) ?? new Set<string>();
    k.webgpu.forEach((v) => names.add(v.name));
    families.set(k.family, names);
  }
  for (const [family, variant] of Object.entries(config().variants)) {
    const names = families.get(family);
    if (!names)
      throw new OpError(
        'variants',
        `unknown kernel family '${family}' (DAWNGRAD_VARIANTS / configure({ variants })); the families are ${[...families.keys()].sort().join(', ')}`,
      );
    if (!names.has(variant))
      throw new OpError(
        'variants',
        `family '${family}' has no variant '${variant}'; its variants are ${[...names].join(', ')}`,
      );
  }
  forcedChecked = true;
}

/**
 * The variant that runs `args`: the forced one (config().variants); else, with autotune on, the fastest
 * measured on this adapter for this shape bucket (core/autotune.ts); else the first that fits and
 * prefers, else the first that fits.
 */
export function chooseVariant<A>(kernel: Kernel<A>, args: A): Variant<A> {
  return pickVariant(kernel, args).variant;
}

/** chooseVariant, and the candidates to time (with the bucket) when this bucket has no measurement yet. */
function pickVariant<A>(
  kernel: Kernel<A>,
  args: A,
): { variant: Variant<A>; tuning: { candidates: Variant<A>[]; bucket: string } | null } {
  checkForcedVariants();
  const hw = hardware();
  const forced = config().variants[kernel.family];
  const own = forced === undefined ? undefined : kernel.webgpu.find((v) => v.name === forced);
  if (own) {
    const fit = own.fits ? own.fits(args, hw) : true;
    if (fit !== true)
      throw new OpError(
        kernel.name,
        `the forced variant '${forced}' (family '${kernel.family}') does not fit these arguments on this adapter${typeof fit === 'string' ? ` (${fit})` : ''}; unset it or pick another of ${kernel.webgpu.map((v) => v.name).join(', ')}`,
      );
    return { variant: own, tuning: null };
  }
  const verdicts = kernel.webgpu.map((v) => ({ v, fit: v.fits ? v.fits(args, hw) : true }));
  const fitting = verdicts.filter((d) => d.fit === true).map((d) => d.v);
  const pick = fitting.find((v) => !v.prefer || v.prefer(args, hw)) ?? fitting[0];
  if (!pick) {
    const reasons = verdicts.map(({ v, fit }) => (typeof fit === 'string' ? `${v.name}: ${fit}` : v.name));
    throw new OpError(
      kernel.name,
      `no webgpu variant fits these arguments on this adapter (${reasons.join('; ')}); use device 'cpu'`,
    );
  }
  const rt = gpuRuntime();
  if (config().autotune === 'off' || fitting.length < 2 || !rt) return { variant: pick, tuning: null };
  const bucket = shapeBucket(args as object);
  const tuned = tunedChoice(
    rt,
    kernel.name,
    bucket,
    fitting.map((v) => v.name),
  );
  if (tuned) return { variant: fitting.find((v) => v.name === tuned.variant)!, tuning: null };
  return { variant: pick, tuning: mayTune(kernel.name, bucket) ? { candidates: fitting, bucket } : null };
}

const variantRuns = new Map<string, number>();

/**
 * How often each 'kernel:variant' ran on webgpu in this process (the variant-coverage tests read it), and
 * 'kernel:variant:float16' how often it ran with float16 tensors among its arguments (native float16 kernels).
 */
export function variantUsage(): ReadonlyMap<string, number> {
  return variantRuns;
}

/** The tensors among a kernel's arguments (top-level fields, and arrays of tensors). */
function tensorArgs(args: unknown): View[] {
  const isView = (x: unknown): x is View => typeof x === 'object' && x !== null && 'storage' in x && 'dtype' in x;
  const found: View[] = [];
  for (const v of Object.values(args as object)) {
    if (isView(v)) found.push(v);
    else if (Array.isArray(v)) found.push(...v.filter(isView));
  }
  return found;
}

/**
 * Runs a kernel on `device`: the float64 reference on cpu (float16 tensors rounded after it, as the
 * device rounds on store; inputs are already float16 values, so only outputs change), the chosen variant
 * on webgpu.
 */
export function dispatch<A>(kernel: Kernel<A>, device: DeviceName, args: A): void {
  if (device === 'cpu') {
    kernel.cpu(args);
    tensorArgs(args).forEach(roundFloat16View);
    return;
  }
  const half = tensorArgs(args).some((t) => t.dtype === 'float16');
  if (half && !kernel.float16)
    throw new OpError(
      kernel.name,
      'this kernel has no float16 version; give it float32 tensors (.float()), e.g. float32 master weights with autocast for training',
    );
  const { variant, tuning } = pickVariant(kernel, args);
  if (tuning) {
    const byName = new Map(tuning.candidates.map((v) => [v.name, v]));
    // Elementwise work a variant does must run inside its timed pass, not be deferred by fusion.
    const fuser = gpuBackend()!.fuser;
    const fusing = fuser.enabled;
    fuser.enabled = false;
    try {
      tune(gpuRuntime()!, kernel.name, tuning.bucket, [...byName.keys()], variant.name, (name) =>
        byName.get(name)!.run(args),
      );
    } finally {
      fuser.enabled = fusing;
    }
  }
  const key = `${kernel.name}:${variant.name}`;
  variantRuns.set(key, (variantRuns.get(key) ?? 0) + 1);
  if (half) variantRuns.set(`${key}:float16`, (variantRuns.get(`${key}:float16`) ?? 0) + 1);
  variant.run(args); // last, so the outputs are the chosen variant's whether or not tuning ran
}
