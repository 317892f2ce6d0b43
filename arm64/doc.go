// Package arm64 is the AArch64 VMSA as the Linux arm64 kernel uses it, as data:
// translation granules and levels, descriptor bits and predicates, the kernel's
// protection values, the kernel virtual address layout, and the CPU facts that
// decide how the kernel may change live mappings (BBML2_NOABORT).
//
// It holds no state. Facts come from arch/arm64/include/asm/pgtable-hwdef.h,
// pgtable-prot.h, pgtable.h, memory.h, cputype.h and arch/arm64/kernel/cpufeature.c;
// each declaration names the kernel symbol it mirrors.
package arm64
