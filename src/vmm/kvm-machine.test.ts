import { describe, expect, it } from 'vitest';
import { warmUp } from './kvm-machine.js';

// A prestarted vCPU thread swallows warmUp's errors (the real build reports them): a device
// change that breaks the throwaway build or its save/restore round trip shows here instead.
describe('warmUp', () => {
  it('builds a machine and restores its own devices into it', async () => {
    let asked = 0;
    await expect(warmUp(async () => (asked++, true))).resolves.toBeUndefined();
    expect(asked).toBe(1);
  });

  it('stops after the build when the vCPU has arrived', async () => {
    let asked = 0;
    await warmUp(async () => (asked++, false));
    expect(asked).toBe(1);
  });
});
