/**
 * Watches the guest's console output for Linux's panic line ("Kernel panic - not syncing: ...")
 * so that a panic the pvpanic device cannot report — a kernel with no initramfs, or one that
 * never loads the pvpanic module — still ends the VM as a panic, with its reason, instead of
 * looking like an ordinary reboot (the default command line's panic=-1 resets at once).
 * Keeps one bounded line of output.
 */
const PANIC = 'Kernel panic - not syncing: ';
/** Longest line kept; longer ones are cut (a panic message is one short line). */
const MAX_LINE = 512;

export class PanicWatch {
  /** The panic message, once the guest printed one. */
  reason: string | undefined;
  private line = '';

  /** Feed console output (any chunking). */
  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (b === 0x0a || b === 0x0d) {
        this.endLine();
      } else if (this.line.length < MAX_LINE) {
        this.line += String.fromCharCode(b >= 0x20 && b < 0x7f ? b : 0x3f);
      }
    }
  }

  private endLine(): void {
    const at = this.line.indexOf(PANIC);
    if (at >= 0 && this.reason === undefined) {
      this.reason = this.line.slice(at + PANIC.length).replace(/\s*\]---\s*$/, '').trim() || 'no reason given';
    }
    this.line = '';
  }
}
