import { describe, expect, it } from 'vitest';
import { ConfigError, parseSize, validateCpus, validateEngine, validateMemory } from './config.js';

const MiB = 1024 * 1024;

describe('parseSize', () => {
  it('accepts units and treats a bare number as MiB', () => {
    expect(parseSize('512M')).toBe(512 * MiB);
    expect(parseSize('2G')).toBe(2048 * MiB);
    expect(parseSize('2g')).toBe(2048 * MiB);
    expect(parseSize('1024')).toBe(1024 * MiB);
    expect(parseSize('1.5G')).toBe(1536 * MiB);
    expect(parseSize('256MiB')).toBe(256 * MiB);
    expect(parseSize('65536k')).toBe(64 * MiB);
  });
  it('rejects nonsense with a message naming the fix', () => {
    expect(() => parseSize('lots')).toThrow(/use a number with a unit/);
    expect(() => parseSize('12X')).toThrow(ConfigError);
    expect(() => parseSize('')).toThrow(ConfigError);
  });
});

describe('validation', () => {
  it('rejects zero and oversized memory', () => {
    expect(() => validateMemory(0, 8 * 1024 * MiB)).toThrow(/more than 0/);
    expect(() => validateMemory(16 * 1024 * MiB, 8 * 1024 * MiB)).toThrow(/more than this host can give/);
    expect(() => validateMemory(512 * MiB, 8 * 1024 * MiB)).not.toThrow();
  });
  it('rejects unknown engines and bad cpu counts', () => {
    expect(() => validateEngine('qemu')).toThrow(/unknown engine "qemu": choose one of auto, bt, kvm/);
    expect(validateEngine('bt')).toBe('bt');
    expect(() => validateCpus(0)).toThrow(/out of range/);
  });
});
