import { describe, expect, it } from 'vitest';
import { TimerQueue, type Clock } from '../machine/clock.js';
import { MemoryDiskBackend } from '../devices/virtio/blk/backend.js';
import { IoPoll, polledDisk } from './io-poll.js';

function fakeTimers(): { timers: TimerQueue; clock: { now: number } & Clock } {
  const clock = { now: 0, nowNs: () => clock.now };
  return { timers: new TimerQueue(clock), clock };
}

describe('IoPoll', () => {
  it('keeps a deadline due while operations are in flight, and none otherwise', () => {
    const { timers, clock } = fakeTimers();
    const poll = new IoPoll(50_000);
    poll.attach(timers);
    expect(timers.nextDeadline()).toBe(Infinity);
    let completed = 0;
    const done = poll.begin(() => completed++);
    expect(poll.pending).toBe(1);
    expect(timers.nextDeadline()).toBe(50_000);
    clock.now = 50_000;
    timers.runDue();
    expect(poll.polls).toBe(1);
    expect(timers.nextDeadline()).toBe(100_000); // still in flight: poll again
    done();
    done(); // counted once
    expect(completed).toBe(2);
    expect(poll.pending).toBe(0);
    clock.now = 100_000;
    timers.runDue();
    expect(timers.nextDeadline()).toBe(Infinity);
  });

  it('arms once attached when operations started before the machine existed', () => {
    const { timers } = fakeTimers();
    const poll = new IoPoll(10_000);
    poll.begin(() => {});
    poll.attach(timers);
    expect(timers.nextDeadline()).toBe(10_000);
  });

  it('polledDisk passes every operation through and counts it until its completion', () => {
    const { timers } = fakeTimers();
    const poll = new IoPoll();
    poll.attach(timers);
    const mem = new MemoryDiskBackend(4096);
    mem.deferred = [];
    const disk = polledDisk(mem, poll);
    expect(disk.size).toBe(4096);
    expect(disk.readOnly).toBe(false);
    const errors: (Error | undefined)[] = [];
    disk.write(512, [new Uint8Array(512).fill(7)], (e) => errors.push(e));
    disk.flush((e) => errors.push(e));
    expect(poll.pending).toBe(2);
    mem.complete();
    expect(poll.pending).toBe(0);
    const back = new Uint8Array(512);
    disk.read(512, [back], (e) => errors.push(e));
    mem.complete();
    expect(back.every((b) => b === 7)).toBe(true);
    expect(errors).toEqual([undefined, undefined, undefined]);
    expect(mem.flushes).toBe(1);
  });
});
