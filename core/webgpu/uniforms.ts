// The uniform params block every kernel reads (binding 0): its WGSL header and named layouts.
// A kernel declares its fields once, by name and type, in order; the layout assigns the words, and the
// same object gives the WGSL side its slot numbers / typed reads and the host side its packer.
import { PARAM_WORDS } from './runtime.js';

export type UniformType = 'u32' | 'i32' | 'f32';
/** A scalar field, or a fixed-length array of words of one type. */
export type FieldSpec = UniformType | readonly [UniformType, number];
type Fields = Record<string, FieldSpec>;

/**
 * -Infinity and NaN for WGSL: it has no literals for them and rejects constant expressions that
 * evaluate to them, so every packed block carries their bits in the last two words.
 */
const NEG_INF_WORD = PARAM_WORDS - 1;
const NAN_WORD = PARAM_WORDS - 2;
/** Words a layout may use (the rest are the reserved constants above). */
export const LAYOUT_WORDS = PARAM_WORDS - 2;
export const NEG_INF = `pf(${NEG_INF_WORD}u)`;
export const NAN = `pf(${NAN_WORD}u)`;

/** The params-uniform header every kernel starts with: binding 0 = params, then `bindings` in order. */
export const header = (bindings: string[]): string => `
struct Params { v: array<vec4<u32>, ${PARAM_WORDS / 4}> }
@group(0) @binding(0) var<uniform> P: Params;
${bindings.map((b, i) => `@group(0) @binding(${i + 1}) ${b};`).join('\n')}
fn pu(i: u32) -> u32 { return P.v[i / 4u][i % 4u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(P.v[i / 4u][i % 4u]); }
fn pi(i: u32) -> i32 { return bitcast<i32>(P.v[i / 4u][i % 4u]); }
`;

const wordBits = new DataView(new ArrayBuffer(4));
/** The u32 word holding `value` as a `type` (f32/i32 bit pattern, or u32 as is). */
export function bitsOf(value: number, type: UniformType): number {
  if (type === 'f32') wordBits.setFloat32(0, value, true);
  else if (type === 'i32') wordBits.setInt32(0, value, true);
  else wordBits.setUint32(0, value, true);
  return wordBits.getUint32(0, true);
}

const READER: Record<UniformType, string> = { u32: 'pu', i32: 'pi', f32: 'pf' };

type Values<F extends Fields> = { readonly [K in keyof F]?: F[K] extends UniformType ? number : readonly number[] };

interface LayoutMethods<F extends Fields> {
  /** The uniform block with these field values (unset fields are 0). */
  pack(values: Values<F>): Uint32Array;
  /** Typed WGSL read of a field (element `index`, a WGSL u32 expression, of an array field). */
  read(field: keyof F & string, index?: string): string;
}

/** Slot numbers by field name (first word of each field), plus pack / read. */
export type UniformLayout<F extends Fields> = { readonly [K in keyof F]: number } & LayoutMethods<F>;

/**
 * Lays `fields` out in declaration order, one word per scalar, `n` consecutive words per array.
 * Field names are UPPER_CASE by convention, so they never clash with pack / read.
 */
export function uniformLayout<const F extends Fields>(fields: F): UniformLayout<F> {
  const slots: Record<string, number> = {};
  const types: Record<string, UniformType> = {};
  const lengths: Record<string, number> = {};
  let next = 0;
  for (const [name, spec] of Object.entries(fields)) {
    if (name === 'pack' || name === 'read')
      throw new Error(`uniformLayout: field name '${name}' is reserved; rename it`);
    const [type, length] = typeof spec === 'string' ? [spec, 1] : spec;
    slots[name] = next;
    types[name] = type;
    lengths[name] = length;
    next += length;
  }
  if (next > LAYOUT_WORDS)
    throw new Error(
      `uniformLayout: fields need ${next} words, more than the ${LAYOUT_WORDS} a params block holds; shrink the arrays`,
    );
  const methods: LayoutMethods<F> = {
    pack(values) {
      const words = new Uint32Array(PARAM_WORDS);
      words[NEG_INF_WORD] = 0xff800000;
      words[NAN_WORD] = 0x7fc00000;
      for (const [name, value] of Object.entries(values as Record<string, number | readonly number[] | undefined>)) {
        if (value === undefined) continue;
        const at = slots[name];
        if (at === undefined)
          throw new Error(`uniformLayout.pack: unknown field '${name}' (fields: ${Object.keys(slots).join(', ')})`);
        const list = typeof value === 'number' ? [value] : value;
        if (list.length > lengths[name])
          throw new Error(
            `uniformLayout.pack: field '${name}' holds ${lengths[name]} words, got ${list.length} values`,
          );
        list.forEach((v, k) => {
          words[at + k] = bitsOf(v, types[name]);
        });
      }
      return words;
    },
    read(field, index) {
      const at = slots[field];
      return `${READER[types[field]]}(${at}u${index === undefined ? '' : ` + ${index}`})`;
    },
  };
  return Object.assign(Object.create(methods) as LayoutMethods<F>, slots) as UniformLayout<F>;
}
