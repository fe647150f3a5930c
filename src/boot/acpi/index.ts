/** ACPI tables and the AML encoder behind the DSDT. */
export { buildAcpiTables, writeAcpiTables, checksum, type AcpiOptions, type AcpiTable, type AcpiTables } from './tables.js';
export { facsWakeTarget, type WakeTarget } from './wake.js';
