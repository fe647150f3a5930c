/**
 * The console on a terminal: raw mode, Ctrl-A X quits with status 0, and the terminal is
 * restored afterwards (canonical mode and echo back on). Runs under `script`, which gives the
 * process a pseudo-terminal.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI } from '../support/guest-process.js';

const NASM = '/usr/bin/nasm';
const SCRIPT = '/usr/bin/script';
const here = path.dirname(fileURLToPath(import.meta.url));
const missing = [NASM, SCRIPT].filter((p) => !existsSync(p));

function runInPty(shellCommand: string, input: (write: (s: string) => void, output: () => string) => Promise<void>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(SCRIPT, ['-qefc', shellCommand, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out; output:\n${out}`));
    }, 60_000);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(out);
    });
    input((s) => child.stdin.write(s), () => out).catch(reject);
  });
}

async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
}

describe('the console on a terminal', () => {
  it.skipIf(missing.length > 0)(`quits on Ctrl-A X and restores the terminal${missing.length ? ` (skipped: missing ${missing.join(', ')})` : ''}`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-tty-'));
    const kernel = path.join(dir, 'idle.bin');
    execFileSync(NASM, ['-f', 'bin', '-o', kernel, path.join(here, 'guests/idle.asm')]);
    const cmd = `${process.execPath} --import tsx ${CLI} run --engine bt -m 64M --kernel ${kernel}; echo "status=$?"; stty -a`;
    const out = await runInPty(cmd, async (write, output) => {
      await until(() => output().includes('idle kernel up'));
      write('\x01x');
    });
    expect(out).toContain('idle kernel up');
    expect(out).toMatch(/status=0/);
    // stty -a lists a disabled flag with a leading '-': the terminal is back in cooked mode
    expect(out).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(out).toMatch(/(^|\s)echo(\s|$)/m);
  });
});
