import { coreSuite } from './suite.test-helper.js';
import { insnSuite } from './suite-insns.test-helper.js';
import { systemSuite } from './suite-system.test-helper.js';

coreSuite('CPU core (interpreter)', Infinity);
systemSuite('CPU core (interpreter)', Infinity);
insnSuite('CPU core (interpreter)', Infinity);
