import { coreSuite } from './suite.test-helper.js';

// Every directed test again with each block translated on first execution.
coreSuite('CPU core (translated blocks)', 1);
