/**
 * Drive `typevisor run` as a child process over pipes, the way a user's script would:
 * wait for output patterns, type commands, collect the exit status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'src/cli/main.ts');

export class VmProcess {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private waiters: { re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', CLI, 'run', ...args], {
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

  /** Type a command line and return the output that follows it until the next prompt. */
  async command(line: string, timeoutMs: number, prompt = /(?:^|\n)[^\n]*# $/): Promise<string> {
    const from = this.output.length;
    this.child.stdin!.write(`${line}\n`);
    await this.waitFor(new RegExp(prompt.source), timeoutMs, from + line.length);
    const text = this.output.slice(from);
    // drop the echoed command line and the trailing prompt
    const lines = text.split(/\r?\n/);
    return lines.slice(1, -1).join('\n');
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
