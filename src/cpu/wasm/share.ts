/**
 * One translation for every vCPU: with vCPUs on threads of their own, a block module compiled on
 * one thread is posted to the others, which instantiate it instead of translating and compiling
 * the same code again. A posted `WebAssembly.Module` shares its machine code, tier-ups included,
 * so the compile cost does not grow with the vCPU count.
 *
 * What makes a module portable: its blocks address their vCPU's state area through an imported
 * global (a relative BlockLayout), and the exit numbers baked into them come from the compiling
 * vCPU's own range of the exit-link space (backend.ts), so no two threads' modules use one. What
 * a thread checks before it uses a posted block: that the block's RIP maps to the RAM it was
 * made from, and (after marking its code lines, so a later store is seen) that those bytes are
 * still the ones it was translated from.
 *
 * The engine supplies the channel (engine/bt: a BroadcastChannel read with receiveMessageOnPort);
 * this module only keeps the directory of blocks the other threads made.
 */

/** A block as its compiling thread describes it. */
export interface SharedBlockInfo {
  /** Unique over all vCPUs: sequence number * 8 + the compiling vCPU's index. */
  id: number;
  rip: number;
  /** RAM offset of rip, and the RAM range [lo, end) the block was translated from. */
  off: number;
  lo: number;
  end: number;
  /** Guest instructions in the block (Block.n). */
  n: number;
  /** The bytes [lo, end) as they were when the block was translated. */
  bytes: Uint8Array;
}

/** What the threads post to each other. Function `g<i>` of a module is its blocks[i] / ids[i]. */
export type ShareMessage =
  | { kind: 'module'; from: number; module: WebAssembly.Module; exits: number[]; blocks: SharedBlockInfo[] }
  | { kind: 'merge'; from: number; module: WebAssembly.Module; exits: number[]; ids: number[] }
  /** The sender numbers its exits from the start of its range again: drop what came from it. */
  | { kind: 'restart'; from: number };

/** The engine's channel between the vCPU threads of one VM. */
export interface ModuleChannel {
  /** To every other thread of the VM. */
  post(msg: ShareMessage): void;
  /** The next message another thread posted, or undefined (never blocks). */
  receive(): ShareMessage | undefined;
}

/** A posted module in this thread: its instance here once one of its blocks is used. */
export interface SharedModule {
  module: WebAssembly.Module;
  exits: number[];
  inst?: { exports: Record<string, unknown>; mod: number };
}

export interface DirectoryEntry {
  info: SharedBlockInfo;
  src: SharedModule;
  /** Its function is g<idx> of src. */
  idx: number;
}

/**
 * Directory entries, and posted modules they refer to, kept at most: past either, all are
 * forgotten (blocks are then compiled here again). An entry holds its module's code alive after
 * its sender dropped it, so the module count is what bounds host memory, as the sender's own
 * ceiling does (backend.ts MAX_MODULES).
 */
const MAX_ENTRIES = 1 << 17;
const MAX_MODULES_HELD = 4096;

/** Blocks other threads compiled, by RIP; and which of them this thread runs, by id. */
export class BlockDirectory {
  private readonly byRip = new Map<number, DirectoryEntry[]>();
  private readonly byId = new Map<number, DirectoryEntry>();
  /** Table slot here of each block taken from another thread (by id). */
  readonly adopted = new Map<number, number>();
  /** Posted modules instantiated here (their instances die with this thread's next reset). */
  private instantiated: SharedModule[] = [];
  /** Posted modules taken in since the directory was last cleared. */
  private held = 0;

  /** A module another thread compiled: its blocks become available here. */
  addModule(sm: SharedModule, blocks: readonly SharedBlockInfo[]): void {
    if (this.byId.size + blocks.length > MAX_ENTRIES || ++this.held > MAX_MODULES_HELD) this.clear();
    blocks.forEach((info, idx) => {
      const e: DirectoryEntry = { info, src: sm, idx };
      const list = this.byRip.get(info.rip);
      if (list === undefined) this.byRip.set(info.rip, [e]);
      else {
        // a newer translation of the same code replaces the older one
        const i = list.findIndex((o) => o.info.off === info.off);
        if (i >= 0) {
          this.byId.delete(list[i]!.info.id);
          list[i] = e;
        } else list.push(e);
      }
      this.byId.set(info.id, e);
    });
  }

  /** Another thread's merge: its blocks not taken here yet come from the merged module from now on. */
  moveToMerged(sm: SharedModule, ids: readonly number[]): void {
    if (++this.held > MAX_MODULES_HELD) this.clear();
    ids.forEach((id, idx) => {
      const e = this.byId.get(id);
      if (e !== undefined) {
        e.src = sm;
        e.idx = idx;
      }
    });
  }

  /** The entry for a block at linear rip made from RAM offset off, if any. */
  find(rip: number, off: number): DirectoryEntry | undefined {
    const list = this.byRip.get(rip);
    if (list === undefined) return undefined;
    for (const e of list) if (e.info.off === off) return e;
    return undefined;
  }

  /** Forget an entry (its bytes changed since). */
  forget(e: DirectoryEntry): void {
    this.byId.delete(e.info.id);
    const list = this.byRip.get(e.info.rip);
    if (list === undefined) return;
    const rest = list.filter((o) => o !== e);
    if (rest.length === 0) this.byRip.delete(e.info.rip);
    else this.byRip.set(e.info.rip, rest);
  }

  /** Forget every block vCPU `from` made (it restarted its exit numbering). */
  forgetFrom(from: number): void {
    for (const e of [...this.byId.values()]) if (e.info.id % 8 === from) this.forget(e);
  }

  /** A module was instantiated here. */
  noteInstance(sm: SharedModule): void {
    this.instantiated.push(sm);
  }

  /** This thread dropped every block: no instance here survives, nothing is taken. */
  dropInstances(): void {
    for (const sm of this.instantiated) sm.inst = undefined;
    this.instantiated = [];
    this.adopted.clear();
  }

  private clear(): void {
    this.byRip.clear();
    this.byId.clear();
    this.held = 0;
  }
}

/** Are RAM bytes [lo, lo + bytes.length) equal to `bytes`? */
export function sameAsTranslated(ram: Uint8Array, lo: number, bytes: Uint8Array): boolean {
  if (lo + bytes.length > ram.length) return false;
  for (let i = 0; i < bytes.length; i++) if (ram[lo + i] !== bytes[i]) return false;
  return true;
}
