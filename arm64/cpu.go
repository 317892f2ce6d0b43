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

// Common CPUs. The Cortex-X4 and Neoverse-V3 are revisions the kernel's
// BBML2_NOABORT allow-list accepts (r0p3, r0p2); the *Early ones are the
// revisions just below, which it rejects.
var (
	MIDRCortexA72       = MakeMIDR(ImpArm, PartCortexA72, 0, 3)
	MIDRNeoverseN1      = MakeMIDR(ImpArm, PartNeoverseN1, 4, 1)
	MIDRNeoverseV3      = MakeMIDR(ImpArm, PartNeoverseV3, 0, 2)
	MIDRNeoverseV3Early = MakeMIDR(ImpArm, PartNeoverseV3, 0, 1)
	MIDRCortexX4        = MakeMIDR(ImpArm, PartCortexX4, 0, 3)
	MIDRCortexX4Early   = MakeMIDR(ImpArm, PartCortexX4, 0, 2)
	MIDRAmpere1         = MakeMIDR(ImpAmpere, PartAmpere1, 0, 0)
	MIDRAmpere1A        = MakeMIDR(ImpAmpere, PartAmpere1A, 0, 0)
	MIDROlympus         = MakeMIDR(ImpNVIDIA, PartOlympus, 0, 0)
)

// MIDRRange is struct midr_range (cputype.h): a CPU model (implementer,
// architecture and part: MIDR_CPU_MODEL_MASK) and an inclusive range of
// (variant, revision) pairs, compared as variant<<4 | revision.
type MIDRRange struct {
	Model        MIDR   // MIDR_CPU_MODEL(implementer, part), variant and revision 0
	RVMin, RVMax uint32 // MIDR_CPU_VAR_REV(variant, revision)
}

// midrVarRev is MIDR_CPU_VAR_REV: the variant and revision fields in place.
func midrVarRev(variant, revision uint32) uint32 { return variant<<20 | revision }

// MIDRRangeOf is MIDR_RANGE(model, v_min, r_min, v_max, r_max).
func MIDRRangeOf(implementer, part, vMin, rMin, vMax, rMax uint32) MIDRRange {
	return MIDRRange{MakeMIDR(implementer, part, 0, 0), midrVarRev(vMin, rMin), midrVarRev(vMax, rMax)}
}

// MIDRRevRange is MIDR_REV_RANGE(model, variant, r_min, r_max): one variant,
// a range of revisions (MIDR_RANGE(model, v, r_min, v, r_max)).
func MIDRRevRange(implementer, part, variant, rMin, rMax uint32) MIDRRange {
	return MIDRRangeOf(implementer, part, variant, rMin, variant, rMax)
}

// MIDRAllVersions is MIDR_ALL_VERSIONS(model): every variant and revision.
func MIDRAllVersions(implementer, part uint32) MIDRRange {
	return MIDRRangeOf(implementer, part, 0, 0, 0xf, 0xf)
}

// Contains is is_midr_in_range / midr_is_cpu_model_range: the same model
// (implementer, architecture, part) and variant:revision inside the range.
func (r MIDRRange) Contains(m MIDR) bool {
	const modelMask = 0xff<<24 | 0xf<<16 | 0xfff<<4
	const rvMask = 0xf<<20 | 0xf
	if uint32(m)&modelMask != uint32(r.Model)&modelMask {
		return false
	}
	rv := uint32(m) & rvMask
	return rv >= r.RVMin && rv <= r.RVMax
}

// BBML2NoAbortList is supports_bbml2_noabort_list of
// cpu_supports_bbml2_noabort (arch/arm64/kernel/cpufeature.c):
// MIDR_REV_RANGE(MIDR_CORTEX_X4, 0, 3, 0xf), MIDR_REV_RANGE(MIDR_NEOVERSE_V3,
// 0, 2, 0xf), MIDR_REV_RANGE(MIDR_NEOVERSE_V3AE, 0, 2, 0xf) and
// MIDR_ALL_VERSIONS of NVIDIA Olympus, AmpereOne and AmpereOne A. The second
// argument of MIDR_REV_RANGE is the variant, the last two the revision range:
// Cortex-X4 r0p3..r0p15 and Neoverse-V3/V3AE r0p2..r0p15; any r1 part is not
// listed. ID_AA64MMFR2_EL1.BBM is deliberately not consulted.
var BBML2NoAbortList = []MIDRRange{
	MIDRRevRange(ImpArm, PartCortexX4, 0, 3, 0xf),
	MIDRRevRange(ImpArm, PartNeoverseV3, 0, 2, 0xf),
	MIDRRevRange(ImpArm, PartNeoverseV3AE, 0, 2, 0xf),
	MIDRAllVersions(ImpNVIDIA, PartOlympus),
	MIDRAllVersions(ImpAmpere, PartAmpere1),
	MIDRAllVersions(ImpAmpere, PartAmpere1A),
}

// SupportsBBML2NoAbort is cpu_supports_bbml2_noabort for one CPU's MIDR.
func (m MIDR) SupportsBBML2NoAbort() bool {
	for _, r := range BBML2NoAbortList {
		if r.Contains(m) {
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
