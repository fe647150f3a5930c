/**
 * Drive a VM process (typevisor run, or QEMU for side-by-side figures) over pipes, the way a
 * user's script would: wait for output patterns, type commands, collect the exit status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'src/cli/main.ts');

/** The command line that runs `typevisor run ARGS` from the sources. */
export function typevisorCommand(args: string[]): [string, string[]] {
  // the node flags of the `typevisor` command's shebang (src/cli/main.ts)
  return [process.execPath, ['--v8-pool-size=1', '--import', 'tsx', CLI, 'run', ...args]];
}

export class VmProcess {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private waiters: { re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];

  readonly startedAt = performance.now();

  /** `args` are typevisor's; pass `command` to run something else (QEMU). */
  constructor(args: string[], env: Record<string, string> = {}, command?: [string, string[]]) {
    const [file, argv] = command ?? typevisorCommand(args);
    this.child = spawn(file, argv, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString('latin1');
      this.check();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolve when `re` matches output produced after offset `from` (default: anywhere). */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output tail:\n${this.output.slice(-3000)}\nstderr:\n${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      this.waiters.push({
        re,
        from,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
      this.check();
    });
  }

  /** Run a shell command in the guest and return what it printed (between unique markers). */
  async sh(cmd: string, timeoutMs: number): Promise<string> {
    const tag = Math.random().toString(36).slice(2, 8);
    const from = this.output.length;
    // The markers are built by the shell, so the echoed command line does not match them.
    this.send(`echo "<<$((1))${tag}"; ${cmd}; echo "${tag}$((2))>>"\n`);
    const m = await this.waitFor(new RegExp(`<<1${tag}\\r?\\n([\\s\\S]*?)${tag}2>>`), timeoutMs, from);
    return m[1]!.replace(/\r/g, '').trimEnd();
  }

  send(text: string): void {
    this.child.stdin!.write(text);
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }

  private check(): void {
    this.waiters = this.waiters.filter((w) => {
      const m = this.output.slice(w.from).match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }
}
