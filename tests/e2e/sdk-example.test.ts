/**
 * examples/sdk.ts, the README's library example, runs as a user would run it: it boots the
 * default guest, prints the kernel's name from the guest's shell, and stops it by the power
 * button (status 0).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('examples/sdk.ts', () => {
  it('boots the default guest, answers from its shell and stops it', async () => {
    // spawned, not spawnSync: a test worker's event loop must not block for a whole boot
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/sdk.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const r = { stdout: '', stderr: '', status: null as number | null };
    child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
    r.status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^Linux \d+\.\d+\.\d+-\S+\nstopped: \{ kind: 'poweroff' \}\n$/);
    expect(r.status).toBe(0);
  }, 6 * 60_000);
});
