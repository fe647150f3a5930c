import { coreSuite } from './suite.test-helper.js';
import { insnSuite } from './suite-insns.test-helper.js';
import { systemSuite } from './suite-system.test-helper.js';

// Every directed test again with each block translated to WebAssembly on first execution.
coreSuite('CPU core (wasm blocks)', 1);
systemSuite('CPU core (wasm blocks)', 1);
insnSuite('CPU core (wasm blocks)', 1);
