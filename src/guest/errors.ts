/**
 * The guest module's one error class. Every failure to prepare the default guest (no apt-get,
 * a package apt does not know, a download or extraction that failed, a package without the file
 * we need) is a GuestError whose message says what to do, usually "pass --kernel and --initrd".
 */
export class GuestError extends Error {
  override name = 'GuestError';
  /** Set when the host has no apt tools, so callers can fall back to a filled cache. */
  readonly code: 'NO_APT' | undefined;

  constructor(message: string, options?: ErrorOptions & { code?: 'NO_APT' }) {
    super(message, options);
    this.code = options?.code;
  }
}

/** The advice every "cannot fetch the default guest" message ends with. */
export const BRING_YOUR_OWN = 'or pass --kernel <bzImage> and --initrd <initramfs> to boot your own guest';
