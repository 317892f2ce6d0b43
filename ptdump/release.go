package ptdump

// OSReleaseComment starts the comment line with which ptlab capture's
// extended format (--pa, --tables) records the kernel release (VMCOREINFO's
// OSRELEASE); the parser keeps it in Dump.OSRelease.
const OSReleaseComment = "# OSRELEASE="
