import { describe, expect, it } from 'vitest';
import { ConfigError, parseCpus, parseSize, validateCpus, validateEngine, validateMemory } from './config.js';

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
    expect(() => parseSize('lots')).toThrow(/^--memory "lots" is not a memory size: give a decimal number with an optional unit K, M, G or T/);
    expect(() => parseSize('12X')).toThrow(ConfigError);
    for (const bad of ['0x200', '1e3', '-512M', '+512M', '512 M B', 'M', '.5G', '5.G', 'Infinity', 'NaN', '512M2']) {
      expect(() => parseSize(bad), bad).toThrow(/is not a memory size: give/);
    }
  });
  it('says an empty size is empty, not 512M', () => {
    expect(() => parseSize('')).toThrow(/^--memory is empty: give a decimal number/);
    expect(() => parseSize('  ')).toThrow(/^--memory is empty/);
  });
  it('refuses sizes beyond what a number can hold', () => {
    expect(() => parseSize('9'.repeat(30) + 'T')).toThrow(/far too large: give at most 64G/);
  });
});

describe('parseCpus', () => {
  it('takes decimal counts from 1 to 64', () => {
    expect(parseCpus('1')).toBe(1);
    expect(parseCpus('64')).toBe(64);
    expect(parseCpus('08')).toBe(8);
  });
  it('refuses anything that is not a decimal whole number, saying what is accepted', () => {
    for (const bad of ['abc', '0x2', '1e1', '1.0', '1.5', '-1', '+2', '2 cpus', 'Infinity']) {
      expect(() => parseCpus(bad), bad).toThrow(new RegExp(`^--cpus "${bad.replace(/[.+]/g, '\\$&')}" is not a decimal whole number: give a count from 1 to 64$`));
    }
    expect(() => parseCpus('')).toThrow(/^--cpus is empty: give a count from 1 to 64$/);
  });
  it('refuses counts out of range', () => {
    expect(() => parseCpus('0')).toThrow(/^--cpus 0 is out of range: use 1 to 64$/);
    expect(() => parseCpus('65')).toThrow(/out of range/);
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
