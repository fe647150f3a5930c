/**
 * The few web-platform globals the portable folders (src/cpu, src/machine, src/devices,
 * src/boot) may use: what browsers and Node both provide. tsconfig.portable.json compiles those
 * folders with these and without Node's types, so reaching for `process`, `Buffer` or a `node:`
 * module there is a compile error: that code must run in a browser too.
 */
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string);
  decode(input?: ArrayBufferView | ArrayBuffer): string;
}
declare function queueMicrotask(callback: () => void): void;
declare const performance: { now(): number };
