/**
 * Every fixed address of typevisor's x86-64 machine, in one place.
 *
 * Guest-physical memory map (both engines):
 *
 *   0x0000_0000 .. 0x0009_fbff   low RAM (real-mode IVT, boot_params, command line, page tables)
 *   0x0009_fc00 .. 0x000f_ffff   reserved: EBDA, VGA hole, BIOS area (ACPI RSDP lives at 0xe0000)
 *   0x0010_0000 .. MMIO32_START  RAM (kernel at 1 MiB, initrd near the top)
 *   MMIO32_START .. 4 GiB        32-bit MMIO hole: PCI BARs, IOAPIC, LAPIC
 *   4 GiB ..                     RAM above the hole, when the guest has more than fits below
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const PAGE_SIZE = 4096;

// ---- low memory used by the loaders -------------------------------------------------------
/** Real-mode interrupt vector table and BIOS data area: left zeroed. */
export const BIOS_DATA_END = 0x500;
/** GDT used for 64-bit and 32-bit entry. */
export const BOOT_GDT_START = 0x500;
/** IDT (empty) loaded at entry. */
export const BOOT_IDT_START = 0x520;
/** Stack pointer handed to kernels that want one (multiboot, PVH). */
export const BOOT_STACK_POINTER = 0x8ff0;
/** Linux zero page (struct boot_params). */
export const ZERO_PAGE_START = 0x7000;
/** Identity-map page tables for 64-bit entry: PML4, PDPT, PDs. */
export const PML4_START = 0x9000;
export const PDPTE_START = 0xa000;
export const PDE_START = 0xb000; // four PD pages: 0xb000..0xefff, identity map of the first 4 GiB
/** Multiboot information structure and its memory map. */
export const MULTIBOOT_INFO_START = 0x10000;
/** Kernel command line. */
export const CMDLINE_START = 0x20000;
export const CMDLINE_MAX_SIZE = 0x10000;
/** Linux setup_data nodes (boot_params.hdr.setup_data): the RNG seed. */
export const SETUP_DATA_START = 0x30000;
export const SETUP_DATA_MAX_SIZE = 0x1000;
/** End of usable low RAM (start of the EBDA). */
export const EBDA_START = 0x9fc00;
/** ACPI tables: RSDP must be in 0xe0000..0xfffff so the kernel's legacy scan finds it. */
export const ACPI_RSDP_START = 0xe0000;
export const ACPI_TABLES_START = 0xe0040;
/**
 * The FACS, first of the tables (64-byte aligned): fixed, so the machine's "firmware" finds the
 * OS's waking vector there on an S3 wake the way a BIOS knows where it put its own FACS.
 */
export const ACPI_FACS_START = ACPI_TABLES_START;
export const ACPI_TABLES_END = 0xfffff;
/** Where high RAM begins. */
export const HIGH_MEMORY_START = 0x100000;
/** Default load address of a 64-bit kernel (bzImage protected-mode part / vmlinux). */
export const KERNEL_LOAD_ADDR = 0x100000;

// ---- the 32-bit MMIO hole -----------------------------------------------------------------
export const MMIO32_START = 0xc000_0000;
export const MMIO32_END = 0x1_0000_0000;
/** PCI BAR window: first part of the hole. */
export const PCI_MMIO_START = 0xc000_0000;
export const PCI_MMIO_SIZE = 0x1000_0000;
/** PCIe ECAM (MMCONFIG) window, one bus: 1 MiB. */
export const PCI_ECAM_START = 0xe000_0000;
export const PCI_ECAM_SIZE = 0x1000_0000;
export const IOAPIC_START = 0xfec0_0000;
export const IOAPIC_SIZE = 0x1000;
export const LAPIC_START = 0xfee0_0000;
export const LAPIC_SIZE = 0x1000;
/** RAM resumes above the hole. */
export const RAM_ABOVE_4G_START = 0x1_0000_0000;

// ---- port I/O -----------------------------------------------------------------------------
export const PORT_PIC_MASTER = 0x20; // 2 ports
export const PORT_PIC_SLAVE = 0xa0; // 2 ports
export const PORT_PIC_ELCR = 0x4d0; // 2 ports, edge/level control
export const PORT_PIT = 0x40; // 4 ports
export const PORT_I8042_DATA = 0x60;
export const PORT_I8042_COMMAND = 0x64;
export const PORT_SYSTEM_CONTROL_B = 0x61; // PIT channel 2 gate / speaker
export const PORT_RTC = 0x70; // 2 ports
export const PORT_DEBUG_EXIT = 0xf4; // 4 ports, like QEMU's isa-debug-exit
export const PORT_PVPANIC = 0x505; // 1 port, like QEMU's pvpanic (ACPI QEMU0001)
export const PORT_POST = 0x80; // POST code port, written by Linux for I/O delays
export const PORT_COM1 = 0x3f8; // 8 ports
export const PORT_COM2 = 0x2f8;
export const PORT_COM3 = 0x3e8;
export const PORT_COM4 = 0x2e8;
export const PORT_PCI_CONFIG_ADDRESS = 0xcf8;
export const PORT_PCI_CONFIG_DATA = 0xcfc;
export const PORT_RESET_CONTROL = 0xcf9; // PIIX "reset control register"
/** ACPI fixed hardware, described by the FADT (PM1a event/control, PM timer, GPE0). */
export const PORT_ACPI_PM1A_EVT = 0x600; // 4 ports: status (2) + enable (2)
export const PORT_ACPI_PM1A_CNT = 0x604; // 2 ports
export const PORT_ACPI_PM_TMR = 0x608; // 4 ports
export const PORT_ACPI_GPE0 = 0x620; // 8 ports: status (4) + enable (4)
/** ACPI PM1 control value SLP_TYP for S5 (soft off) that our DSDT's \_S5 package advertises. */
export const ACPI_S5_SLP_TYP = 5;
/** SLP_TYP for S3 (suspend to RAM) in the DSDT's \_S3 package (QEMU's PIIX4 uses 1 too). */
export const ACPI_S3_SLP_TYP = 1;
export const ACPI_SCI_IRQ = 9;

// ---- interrupt lines (GSI numbers; ISA IRQs map 1:1 except IRQ0 -> GSI 2 on the IOAPIC) ---
export const IRQ_PIT = 0;
export const IRQ_KEYBOARD = 1;
export const IRQ_COM2 = 3;
export const IRQ_COM1 = 4;
export const IRQ_RTC = 8;
export const IRQ_ACPI_SCI = 9;
export const IRQ_MOUSE = 12;
export const IOAPIC_PINS = 24;
/**
 * PCI INTx: pin p (0 = INTA#) of slot s is GSI PCI_INTX_GSI_BASE + (s + p) % PCI_INTX_GSIS, an
 * IOAPIC pin above the ISA range (level-triggered, active low); the DSDT's _PRT says so.
 */
export const PCI_INTX_GSI_BASE = 16;
export const PCI_INTX_GSIS = 8;
export const pciIntxGsi = (slot: number, pin: number): number => PCI_INTX_GSI_BASE + ((slot + pin) % PCI_INTX_GSIS);

// ---- PCI slots (bus 0; slot 0 is the host bridge) -------------------------------------------
export const PCI_SLOT_VIRTIO_RNG = 1;
/** The first virtio-blk disk (/dev/vda); disk n is in slot PCI_SLOT_VIRTIO_BLK + n. */
export const PCI_SLOT_VIRTIO_BLK = 2;
/** The virtio console (--console virtio), last so that disks can take the slots before it. */
export const PCI_SLOT_VIRTIO_CONSOLE = 31;
/** The network card (--net), after the slots the disks may take. */
export const PCI_SLOT_VIRTIO_NET = 24;

// ---- clocks ---------------------------------------------------------------------------------
/** The 8254's input clock. */
export const PIT_FREQUENCY_HZ = 1_193_182;
/** ACPI PM timer frequency. */
export const ACPI_PM_TIMER_HZ = 3_579_545;
/** TSC frequency we present to the guest (software engine). */
export const TSC_FREQUENCY_HZ = 2_000_000_000;
/** LAPIC timer base clock (bus clock) before the divide configuration. */
export const LAPIC_BUS_FREQUENCY_HZ = 1_000_000_000;
