/** Vitest setup file: translate every block on first execution (see oracle-jit.vitest.config.ts). */
import { Cpu } from './cpu.js';

Cpu.defaultJitThreshold = 1;
