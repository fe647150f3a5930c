/** nasm's include directory for the test guests (`-i ASM_INCLUDE`): shared macros in tests/support/asm/. */
import { fileURLToPath } from 'node:url';

export const ASM_INCLUDE = fileURLToPath(new URL('./asm/', import.meta.url));
