/**
 * Validation of untrusted snapshot state, and the encodings the state format uses.
 *
 * A state file is data from outside (a disk, another host, a hand edit): every field is checked
 * against a small schema — type, range, exact set of keys, array lengths — before anything is
 * restored, and the first problem becomes one SnapshotError line naming the field
 * ("devices.pic.master.irr is 300, not an integer from 0 to 255").
 *
 * Encodings (JSON has no 64-bit integers and no byte arrays): 64-bit registers and other wide
 * values are "0x..." hex strings of the unsigned value, as KVM's structures would hold it;
 * byte arrays are arrays of numbers (small), or base64 strings for the kvm engine's structures
 * whose layout is KVM's ABI (XSAVE area, LAPIC page...) — the memory image is not part of the state.
 */

export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

export type Schema =
  | { readonly t: 'int'; readonly min: number; readonly max: number }
  | { readonly t: 'num' }
  | { readonly t: 'bool' }
  | { readonly t: 'hex'; readonly bits: number }
  | { readonly t: 'b64'; readonly min: number; readonly max: number }
  | { readonly t: 'arr'; readonly of: Schema; readonly min: number; readonly max: number }
  | { readonly t: 'obj'; readonly fields: Readonly<Record<string, Schema>> }
  | { readonly t: 'opt'; readonly of: Schema };

export const int = (min: number, max: number): Schema => ({ t: 'int', min, max });
export const num: Schema = { t: 'num' };
export const bool: Schema = { t: 'bool' };
export const hex = (bits: number): Schema => ({ t: 'hex', bits });
/** An array of exactly `len` elements, or from `len` to `max`. */
export const arr = (of: Schema, len: number, max = len): Schema => ({ t: 'arr', of, min: len, max });
export const obj = (fields: Record<string, Schema>): Schema => ({ t: 'obj', fields });
/** A field that may be absent (an object field added to the format later: absent means its default). */
export const opt = (of: Schema): Schema => ({ t: 'opt', of });
/** Bytes as a base64 string (a structure whose layout is KVM's ABI): exactly `len`, or `len` to `max`, bytes. */
export const b64 = (len: number, max = len): Schema => ({ t: 'b64', min: len, max });

export const u8 = int(0, 0xff);
export const u16 = int(0, 0xffff);
export const u32 = int(0, 0xffff_ffff);
/** A non-negative integer a JS number holds exactly. */
export const uint = int(0, Number.MAX_SAFE_INTEGER);
export const hex64 = hex(64);

/** A value as a message shows it: short, and never the whole of a big object. */
export function show(v: unknown): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'string') return v.length > 40 ? `the string "${v.slice(0, 40)}..."` : `the string "${v}"`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

const hexText = (n: number): string => (n > 0xffff ? `0x${n.toString(16)}` : String(n));

function fail(path: string, v: unknown, what: string): never {
  throw new SnapshotError(`Cannot restore the snapshot: ${path} is ${show(v)}, not ${what} (a corrupt or hand-edited state file)`);
}

/** Throw a SnapshotError unless `v` matches `schema`; `path` names it in the message. */
export function check(schema: Schema, v: unknown, path: string): void {
  switch (schema.t) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < schema.min || v > schema.max) fail(path, v, `an integer from ${hexText(schema.min)} to ${hexText(schema.max)}`);
      return;
    case 'num':
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, v, 'a finite number');
      return;
    case 'bool':
      if (typeof v !== 'boolean') fail(path, v, 'true or false');
      return;
    case 'hex': {
      const digits = Math.ceil(schema.bits / 4);
      if (typeof v !== 'string' || !new RegExp(`^0x[0-9a-f]{1,${digits}}$`).test(v) || BigInt(v) >> BigInt(schema.bits) !== 0n) {
        fail(path, v, `a ${schema.bits}-bit value written "0x" and lower-case hex digits`);
      }
      return;
    }
    case 'b64': {
      const what = schema.min === schema.max ? `${schema.min} bytes in base64` : `${schema.min} to ${schema.max} bytes in base64`;
      if (typeof v !== 'string' || v.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) fail(path, v, what);
      const n = (v.length / 4) * 3 - (v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0);
      if (n < schema.min || n > schema.max) throw new SnapshotError(`Cannot restore the snapshot: ${path} holds ${n} bytes, not ${what} (a corrupt or hand-edited state file)`);
      return;
    }
    case 'arr':
      if (!Array.isArray(v)) fail(path, v, schema.min === schema.max ? `an array of ${schema.min}` : `an array of ${schema.min} to ${schema.max}`);
      if (v.length < schema.min || v.length > schema.max) fail(path, v, schema.min === schema.max ? `an array of ${schema.min}` : `an array of ${schema.min} to ${schema.max}`);
      v.forEach((e, i) => check(schema.of, e, `${path}[${i}]`));
      return;
    case 'opt':
      if (v !== undefined) check(schema.of, v, path);
      return;
    case 'obj': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, v, 'an object');
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        if (!(k in schema.fields)) throw new SnapshotError(`Cannot restore the snapshot: ${path} has a field "${k}" this typevisor does not know (a state file from another version, or corrupt)`);
      }
      for (const [k, s] of Object.entries(schema.fields)) check(s, o[k], `${path}.${k}`);
      return;
    }
  }
}

/** Check, then view `v` as the state type the schema describes. */
export function parse<T>(schema: Schema, v: unknown, path: string): T {
  check(schema, v, path);
  return v as T;
}

/** A semantic check that failed: one line naming the field. */
export function invalid(path: string, problem: string): SnapshotError {
  return new SnapshotError(`Cannot restore the snapshot: ${path} ${problem}`);
}

// ---- 64-bit values --------------------------------------------------------------------------

/** An integer-valued number (signed-canonical or unsigned, |n| < 2^53) as unsigned 64-bit hex. */
export function hex64Of(n: number): string {
  return `0x${BigInt.asUintN(64, BigInt(n)).toString(16)}`;
}

/** Two 32-bit halves (as the register file keeps them) as unsigned 64-bit hex. */
export function hex64OfHalves(lo: number, hi: number): string {
  return `0x${((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16)}`;
}

/** Low and high 32-bit halves of a checked "0x..." value, as signed 32-bit integers. */
export function halvesOf(h: string): [number, number] {
  const v = BigInt(h);
  return [Number(v & 0xffff_ffffn) | 0, Number(v >> 32n) | 0];
}

/**
 * A checked "0x..." 64-bit value as a number in the CPU's convention: values with bit 63 set
 * are negative (signed-canonical addresses). Undefined when the number would not be exact.
 */
export function signedOf(h: string): number | undefined {
  const v = BigInt.asIntN(64, BigInt(h));
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return Number(v);
}

/** A checked "0x..." value as an unsigned number, or undefined above 2^53. */
export function unsignedOf(h: string): number | undefined {
  const v = BigInt(h);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}
