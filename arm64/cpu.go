package arm64

import "fmt"

// MIDR is the value of MIDR_EL1 (implementer, variant, architecture, part, revision).
type MIDR uint32

// Implementer codes and part numbers (cputype.h).
const (
	ImpArm    = 0x41
	ImpNVIDIA = 0x4e
	ImpAmpere = 0xc0

	PartCortexA53    = 0xd03
	PartCortexA72    = 0xd08
	PartCortexA76    = 0xd0b
	PartNeoverseN1   = 0xd0c
	PartNeoverseV1   = 0xd40
	PartNeoverseN2   = 0xd49
	PartCortexX4     = 0xd82
	PartNeoverseV3AE = 0xd83
	PartNeoverseV3   = 0xd84
	PartOlympus      = 0x010
	PartAmpere1      = 0xac3
	PartAmpere1A     = 0xac4
)

// MakeMIDR composes a MIDR value (MIDR_CPU_MODEL plus variant and revision).
func MakeMIDR(implementer, part, variant, revision uint32) MIDR {
	return MIDR(implementer<<24 | variant<<20 | 0xf<<16 | part<<4 | revision)
}

func (m MIDR) Implementer() uint32 { return uint32(m) >> 24 }
func (m MIDR) Variant() uint32     { return uint32(m) >> 20 & 0xf }
func (m MIDR) Part() uint32        { return uint32(m) >> 4 & 0xfff }
func (m MIDR) Revision() uint32    { return uint32(m) & 0xf }

func (m MIDR) String() string {
	return fmt.Sprintf("%#08x (imp %#02x part %#03x r%dp%d)", uint32(m), m.Implementer(), m.Part(), m.Variant(), m.Revision())
}

// Common CPUs.
var (
	MIDRCortexA72  = MakeMIDR(ImpArm, PartCortexA72, 0, 3)
	MIDRNeoverseN1 = MakeMIDR(ImpArm, PartNeoverseN1, 4, 1)
	MIDRNeoverseV3 = MakeMIDR(ImpArm, PartNeoverseV3, 0, 1)
	MIDRCortexX4   = MakeMIDR(ImpArm, PartCortexX4, 0, 1)
	MIDRAmpere1    = MakeMIDR(ImpAmpere, PartAmpere1, 0, 0)
	MIDRAmpere1A   = MakeMIDR(ImpAmpere, PartAmpere1A, 0, 0)
	MIDROlympus    = MakeMIDR(ImpNVIDIA, PartOlympus, 0, 0)
)

// bbml2Entry is one line of the BBML2_NOABORT allow-list: a part, with a
// variant range (inclusive) when only some revisions qualify.
type bbml2Entry struct {
	implementer, part  uint32
	minVariant, maxVar uint32
	allRevisions       bool
}

// bbml2NoAbortList is the MIDR allow-list of cpu_supports_bbml2_noabort
// (cpufeature.c): Cortex-X4 r0..r3, Neoverse-V3 and V3AE r0..r2, NVIDIA
// Olympus, AmpereOne and AmpereOne A. ID_AA64MMFR2_EL1.BBM is deliberately
// not consulted by the kernel.
var bbml2NoAbortList = []bbml2Entry{
	{ImpArm, PartCortexX4, 0, 3, false},
	{ImpArm, PartNeoverseV3, 0, 2, false},
	{ImpArm, PartNeoverseV3AE, 0, 2, false},
	{ImpNVIDIA, PartOlympus, 0, 0, true},
	{ImpAmpere, PartAmpere1, 0, 0, true},
	{ImpAmpere, PartAmpere1A, 0, 0, true},
}

// SupportsBBML2NoAbort is cpu_supports_bbml2_noabort for one CPU's MIDR.
func (m MIDR) SupportsBBML2NoAbort() bool {
	for _, e := range bbml2NoAbortList {
		if m.Implementer() != e.implementer || m.Part() != e.part {
			continue
		}
		if e.allRevisions || (m.Variant() >= e.minVariant && m.Variant() <= e.maxVar) {
			return true
		}
	}
	return false
}

// SystemSupportsBBML2NoAbort is the ARM64_HAS_BBML2_NOABORT system capability:
// an early-CPU-local feature, set only if every boot-time CPU matches.
func SystemSupportsBBML2NoAbort(cpus []MIDR) bool {
	if len(cpus) == 0 {
		return false
	}
	for _, m := range cpus {
		if !m.SupportsBBML2NoAbort() {
			return false
		}
	}
	return true
}

// BRK encodes "BRK #imm16".
func BRK(imm uint16) uint32 { return 0xd4200000 | uint32(imm)<<5 }

// FaultBRKImm is the immediate of the kernel's FAULT_BRK_IMM (0x100).
const FaultBRKImm = 0x100

// TrapInsn is AARCH64_BREAK_FAULT, BRK #0x100 = 0xd4202000: the instruction the
// execmem ROX cache fills free text with (aarch64_insn_gen_... fill helper).
var TrapInsn = BRK(FaultBRKImm)
