/**
 * The part of the WebAssembly JavaScript API the translator uses (the project's `lib` has no
 * DOM, where TypeScript declares it). Engines: Node 20+ and browsers.
 */
declare namespace WebAssembly {
  interface MemoryDescriptor {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }
  class Memory {
    constructor(descriptor: MemoryDescriptor);
    readonly buffer: ArrayBuffer;
    grow(delta: number): number;
  }
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Table {
    constructor(descriptor: { initial: number; maximum?: number; element: 'anyfunc' });
    readonly length: number;
    get(index: number): unknown;
    set(index: number, value: unknown): void;
    grow(delta: number): number;
  }
  class Global {
    constructor(descriptor: { value: 'i32'; mutable?: boolean }, value: number);
    readonly value: unknown;
  }
  type ImportValue = Table | Memory | Global | ((...args: number[]) => number | void);
  type Imports = Record<string, Record<string, ImportValue>>;
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, unknown>;
  }
  function validate(bytes: Uint8Array): boolean;
  /** Compile on V8's background threads; the promise settles on the event loop. */
  function compile(bytes: Uint8Array): Promise<Module>;
}
