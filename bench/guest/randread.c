/*
 * 4 KiB random reads with O_DIRECT, for `npm run bench:disk`: N preads at pseudo-random
 * 4 KiB-aligned offsets of DEVICE (fixed seed, so every run and both hypervisors read the same
 * offsets), timed with the guest's CLOCK_MONOTONIC.
 *
 *   randread DEVICE N [SPAN_BYTES]
 *
 * Prints one line: `randread N reads in S s = X IOPS`. SPAN_BYTES limits the offsets to the
 * first SPAN bytes (default: the whole device). Built static by the benchmark:
 * gcc -O2 -static -o randread randread.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static uint64_t state = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) {
  /* xorshift64* */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dull;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: randread DEVICE N [SPAN_BYTES]\n");
    return 2;
  }
  long n = strtol(argv[2], NULL, 10);
  int fd = open(argv[1], O_RDONLY | O_DIRECT);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  uint64_t span = 0;
  if (argc > 3) span = strtoull(argv[3], NULL, 10);
  if (span == 0 && ioctl(fd, BLKGETSIZE64, &span) != 0) {
    struct stat st; /* a regular file (trying the program on the host) */
    if (fstat(fd, &st) != 0) {
      perror(argv[1]);
      return 1;
    }
    span = (uint64_t)st.st_size;
  }
  uint64_t blocks = span / BLOCK;
  if (blocks == 0 || n <= 0) {
    fprintf(stderr, "randread: nothing to read\n");
    return 2;
  }
  void *buf;
  if (posix_memalign(&buf, BLOCK, BLOCK) != 0) return 1;
  double t0 = now();
  for (long i = 0; i < n; i++) {
    off_t off = (off_t)(next() % blocks) * BLOCK;
    if (pread(fd, buf, BLOCK, off) != BLOCK) {
      perror("pread");
      return 1;
    }
  }
  double s = now() - t0;
  printf("randread %ld reads in %.3f s = %.0f IOPS\n", n, s, (double)n / s);
  return 0;
}
