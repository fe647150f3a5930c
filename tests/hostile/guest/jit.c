/*
 * What a JIT does, as a hostile-guest test for typevisor: write `mov eax, imm32; ret` into an
 * RWX page and call it, N times, each time with a new immediate (so every call runs new code).
 * With "data" as the second argument it instead bumps a counter that shares a cache line with
 * an unchanging function, and calls that. Prints "jit ok N" or "jit bad at I".
 * Built static by the test setup: gcc -O2 -static -o jit jit.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  int data = argc > 2 && strcmp(argv[2], "data") == 0;
  unsigned char *page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  page[0] = 0xb8; /* mov eax, imm32 */
  memset(page + 1, 0, 4);
  page[5] = 0xc3; /* ret */
  volatile unsigned *counter = (volatile unsigned *)(page + 32); /* same 64-byte line */
  int (*fn)(void) = (int (*)(void))page;
  for (long i = 0; i < n; i++) {
    unsigned v = (unsigned)i * 2654435761u;
    if (data) {
      (*counter)++;
      v = 0;
    } else {
      memcpy(page + 1, &v, 4);
    }
    __asm__ volatile("" ::: "memory");
    if ((unsigned)fn() != v) {
      printf("jit bad at %ld\n", i);
      return 1;
    }
  }
  printf("jit ok %ld\n", n);
  return 0;
}
