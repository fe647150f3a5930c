/** Vitest setup file: translate every block to WebAssembly on first execution (see oracle-wasm.vitest.config.ts). */
import { Cpu } from './cpu.js';

Cpu.defaultJitThreshold = 1;
Cpu.defaultBackend = 'wasm';
