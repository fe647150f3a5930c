import { coreSuite } from './suite.test-helper.js';

coreSuite('CPU core (interpreter)', Infinity);
