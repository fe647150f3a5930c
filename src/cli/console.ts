/**
 * The host side of the guest's serial console.
 *
 * On a terminal: raw mode, every key goes to the guest, Ctrl-A X quits (Ctrl-A Ctrl-A sends a
 * literal Ctrl-A), as in QEMU. The terminal is restored on every exit path: normal exit,
 * signals, and uncaught errors.
 *
 * Without a terminal: guest output goes to stdout, stdin feeds the guest's serial input. Input
 * is held back until the guest's UART can take it (the UART accepts only what fits its FIFO,
 * and nothing before a program has opened the port), so nothing sent early is lost; stdin is
 * paused while the backlog is large. With no terminal to answer them, the console itself
 * answers the guest's cursor-position queries (ESC [ 6 n), as a terminal would: busybox's shell
 * asks one at every prompt and otherwise swallows the first keys typed after it.
 */

export interface SerialPort {
  /** Offer bytes; returns how many the device accepted. */
  receive(bytes: Uint8Array): number;
  /** Register a callback for when the device has room for more input. */
  onRxSpace(cb: () => void): void;
}

const CTRL_A = 0x01;
const ESC = 0x1b;
/** "ESC [ 6 n": Device Status Report, cursor position. */
const DSR_CPR = [ESC, 0x5b, 0x36, 0x6e];
const BACKLOG_HIGH = 1 << 16;

export class HostConsole {
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;
  private escape = false;
  private rawMode = false;
  private stopped = false;
  /** Pipe mode: how far into DSR_CPR the guest's output is, and the cursor column. */
  private dsrMatch = 0;
  private column = 0;
  private readonly restoreHandlers: (() => void)[] = [];
  private readonly onData = (chunk: Buffer) => this.input(chunk);

  constructor(
    private readonly port: SerialPort,
    private readonly onQuit: () => void,
    private readonly stdin: NodeJS.ReadStream = process.stdin,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
  ) {}

  get isTerminal(): boolean {
    return Boolean(this.stdin.isTTY);
  }

  start(): void {
    if (this.stdin.isTTY) {
      this.stdin.setRawMode(true);
      this.rawMode = true;
      const restore = () => this.restoreTerminal();
      process.on('exit', restore);
      this.restoreHandlers.push(() => process.off('exit', restore));
    }
    this.port.onRxSpace(() => this.pump());
    this.stdin.on('data', this.onData);
    this.stdin.resume();
  }

  /** Guest output. */
  write(bytes: Uint8Array): void {
    this.stdout.write(bytes);
    if (!this.stdin.isTTY) this.answerTerminalQueries(bytes);
  }

  stop(): void {
    this.stopped = true;
    this.stdin.off('data', this.onData);
    this.stdin.pause();
    this.restoreTerminal();
    for (const h of this.restoreHandlers.splice(0)) h();
  }

  restoreTerminal(): void {
    if (this.rawMode && this.stdin.isTTY) {
      try {
        this.stdin.setRawMode(false);
      } catch {
        // the terminal may already be gone (hangup)
      }
      this.rawMode = false;
    }
  }

  private input(chunk: Buffer): void {
    let data: Uint8Array = chunk;
    if (this.rawMode) data = this.filterEscapes(chunk);
    if (data.length === 0) return;
    this.backlog.push(data);
    this.backlogBytes += data.length;
    if (this.backlogBytes > BACKLOG_HIGH) this.stdin.pause();
    this.pump();
  }

  /** Handle Ctrl-A sequences on a terminal; returns the bytes meant for the guest. */
  private filterEscapes(chunk: Uint8Array): Uint8Array {
    const out: number[] = [];
    for (const b of chunk) {
      if (this.escape) {
        this.escape = false;
        if (b === 0x78 || b === 0x58) {
          // 'x' / 'X'
          this.onQuit();
          return new Uint8Array(0);
        }
        if (b === CTRL_A) out.push(CTRL_A);
        continue;
      }
      if (b === CTRL_A) this.escape = true;
      else out.push(b);
    }
    return Uint8Array.from(out);
  }

  /** Reply "ESC [ row ; col R" to each cursor-position query, ahead of any pending input. */
  private answerTerminalQueries(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b === DSR_CPR[this.dsrMatch]) {
        if (++this.dsrMatch === DSR_CPR.length) {
          this.dsrMatch = 0;
          const reply = new TextEncoder().encode(`\x1b[1;${this.column + 1}R`);
          this.backlog.unshift(reply);
          this.backlogBytes += reply.length;
          this.pump();
        }
        continue;
      }
      this.dsrMatch = b === ESC ? 1 : 0;
      if (b === 0x0a || b === 0x0d) this.column = 0;
      else if (b >= 0x20 && b !== 0x7f) this.column++;
    }
  }

  /** Move as much backlog as the UART accepts. */
  private pump(): void {
    if (this.stopped) return;
    while (this.backlog.length) {
      const head = this.backlog[0]!;
      const n = this.port.receive(head);
      this.backlogBytes -= n;
      if (n < head.length) {
        this.backlog[0] = head.subarray(n);
        break;
      }
      this.backlog.shift();
    }
    if (this.backlogBytes <= BACKLOG_HIGH && this.stdin.isPaused()) this.stdin.resume();
  }
}
