import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HostConsole, type SerialPort } from './console.js';

/** A serial port that takes at most `room` bytes until drained. */
class FakePort implements SerialPort {
  received: number[] = [];
  room = 4;
  private space: (() => void) | undefined;
  receive(bytes: Uint8Array): number {
    const n = Math.min(this.room, bytes.length);
    this.received.push(...bytes.subarray(0, n));
    this.room -= n;
    return n;
  }
  onRxSpace(cb: () => void): void {
    this.space = cb;
  }
  drain(room = 4): void {
    this.room = room;
    this.space?.();
  }
  text(): string {
    return String.fromCharCode(...this.received);
  }
}

function pipeConsole(port: FakePort): { stdin: PassThrough; console: HostConsole } {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const c = new HostConsole(port, () => {}, stdin as unknown as NodeJS.ReadStream, stdout as unknown as NodeJS.WriteStream);
  c.start();
  return { stdin, console: c };
}

describe('HostConsole without a terminal', () => {
  it('holds input the port cannot take yet and feeds it as the port drains', async () => {
    const port = new FakePort();
    const { stdin, console: c } = pipeConsole(port);
    stdin.write('uname -r\n');
    await new Promise((r) => setImmediate(r));
    expect(port.text()).toBe('unam');
    port.drain();
    port.drain();
    expect(port.text()).toBe('uname -r\n');
    c.stop();
  });

  it('answers cursor-position queries ahead of pending input, with the current column', async () => {
    const port = new FakePort();
    port.room = 0;
    const { stdin, console: c } = pipeConsole(port);
    stdin.write('ls\n');
    await new Promise((r) => setImmediate(r));
    c.write(new TextEncoder().encode('boot\r\ntypevisor:~# \x1b[6n'));
    port.drain(64);
    expect(port.text()).toBe('\x1b[1;14Rls\n');
    c.stop();
  });
});
