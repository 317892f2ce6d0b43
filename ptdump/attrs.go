package ptdump

import "github.com/ptlab/ptlab/arm64"

// ProtBit is one attribute column of an arm64 dump line (ptdump_prot_bits):
// Set is printed when prot&Mask == Val, else Clear; an empty Clear prints
// nothing at all (the memory-type columns).
type ProtBit struct {
	Mask, Val  uint64
	Set, Clear string
}

// ProtBits are the attribute columns of current arm64 kernels, in print order
// (arch/arm64/mm/ptdump.c pte_bits): BLK means a valid block (type 0b01).
var ProtBits = []ProtBit{
	{arm64.PTEValid, arm64.PTEValid, " ", "F"},
	{arm64.PTEUser, arm64.PTEUser, "USR", "   "},
	{arm64.PTERdonly, arm64.PTERdonly, "ro", "RW"},
	{arm64.PTEPXN, arm64.PTEPXN, "NX", "x "},
	{arm64.PTEShared, arm64.PTEShared, "SHD", "   "},
	{arm64.PTEAF, arm64.PTEAF, "AF", "  "},
	{arm64.PTENG, arm64.PTENG, "NG", "  "},
	{arm64.PTECont, arm64.PTECont, "CON", "   "},
	{arm64.PTETypeMask, arm64.PMDTypeSect, "BLK", "   "},
	{arm64.PTEUXN, arm64.PTEUXN, "UXN", "   "},
	{arm64.PTEGP, arm64.PTEGP, "GP", "  "},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTDeviceNGnRnE), "DEVICE/nGnRnE", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTDeviceNGnRE), "DEVICE/nGnRE", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormalNC), "MEM/NORMAL-NC", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormal), "MEM/NORMAL", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormalTagged), "MEM/NORMAL-TAGGED", ""},
}

// ProtBitsTableBit is the older BLK column (v5.x-v6.x before the
// PMD_TYPE_MASK change): BLK whenever bit 1 is clear, so a present-invalid
// block shows BLK too.
var ProtBitsTableBit = func() []ProtBit {
	b := append([]ProtBit(nil), ProtBits...)
	b[8] = ProtBit{2, 2, "   ", "BLK"}
	return b
}()

// ProtMask is the OR of every column's mask (ptdump_initialize): the bits
// that decide whether two neighbouring entries print as one run. The output
// address, PTE_WRITE/DBM and the software bits are not among them.
func ProtMask(bits []ProtBit) uint64 {
	var m uint64
	for _, b := range bits {
		m |= b.Mask
	}
	return m
}
