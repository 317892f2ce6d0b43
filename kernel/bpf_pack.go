package kernel

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// bpf_prog_pack (kernel/bpf/core.c), used by the arm64 BPF JIT since
// 1dad391daef1 (v6.10, Version.BPFProgPack): JIT images are carved in 64-byte
// chunks out of 2 MiB packs, each pack allocated once (bpf_jit_alloc_exec),
// filled with trapping instructions and made ROX; programs are written into
// it with text patching (bpf_arch_text_copy) and wiped with it
// (bpf_arch_text_invalidate); a pack is freed when its last program goes.
// Images larger than a pack get an allocation of their own.

const (
	bpfProgPackSize   = 2 << 20 // BPF_PROG_PACK_SIZE: SZ_2M per possible node (one node)
	bpfProgChunkShift = 6       // BPF_PROG_CHUNK_SHIFT
	bpfProgChunkCount = bpfProgPackSize >> bpfProgChunkShift
)

type bpfPack struct {
	addr   uint64
	bitmap [bpfProgChunkCount / 64]uint64
	progs  map[uint64]bpfPackProg // by address
}

type bpfPackProg struct{ size, object uint64 }

// bpfPacks is pack_list under pack_mutex.
type bpfPacks struct {
	mu    *Mutex
	packs []*bpfPack
}

// bpfPackSize is the size bpf_jit_binary_pack_alloc asks the pack for: the
// image, its bpf_binary_header (8 bytes) and 16 bytes of random illegal
// instructions, in whole chunks.
func bpfPackSize(proglen uint64) uint64 {
	const chunk = 1 << bpfProgChunkShift
	return (proglen + 8 + 16 + chunk - 1) &^ (chunk - 1)
}

// findZeroArea is bitmap_find_next_zero_area from 0: the first run of n
// clear bits.
func (p *bpfPack) findZeroArea(n int) int {
	run := 0
	for i := 0; i < bpfProgChunkCount; i++ {
		if p.bitmap[i/64] == ^uint64(0) && i%64 == 0 {
			run = 0
			i += 63
			continue
		}
		if p.bitmap[i/64]&(1<<(i%64)) != 0 {
			run = 0
			continue
		}
		run++
		if run == n {
			return i - n + 1
		}
	}
	return -1
}

func (p *bpfPack) setBits(pos, n int, v bool) {
	for i := pos; i < pos+n; i++ {
		if v {
			p.bitmap[i/64] |= 1 << (i % 64)
		} else {
			p.bitmap[i/64] &^= 1 << (i % 64)
		}
	}
}

func (p *bpfPack) empty() bool {
	for _, w := range p.bitmap {
		if bits.OnesCount64(w) != 0 {
			return false
		}
	}
	return true
}

// bpfProgPackAlloc is bpf_prog_pack_alloc for a JIT image of size bytes
// (already rounded by bpfPackSize), holding object.
func (k *Kernel) bpfProgPackAlloc(c CPU, size, object uint64) (uint64, error) {
	if size > bpfProgPackSize {
		return 0, fmt.Errorf("bpf_prog_pack_alloc: %d bytes: %w", size, ErrInvalid)
	}
	bp := k.bpfPacks()
	c.Lock(bp.mu)
	defer c.Unlock(bp.mu)
	n := int(size >> bpfProgChunkShift)
	var pack *bpfPack
	pos := -1
	for _, p := range bp.packs {
		if pos = p.findZeroArea(n); pos >= 0 {
			pack = p
			break
		}
	}
	if pack == nil {
		// alloc_new_pack: bpf_jit_alloc_exec, trap fill, ROX.
		addr, err := k.ExecmemAlloc(c, ExecmemBPF, bpfProgPackSize)
		if err != nil {
			return 0, err
		}
		err = k.execmemFillTrappingInsns(addr, bpfProgPackSize)
		if err == nil && !k.Exec.IsROX(ExecmemBPF) {
			err = k.SetMemoryROX(c, addr, k.pages(bpfProgPackSize))
		}
		if err != nil {
			return 0, errors.Join(fmt.Errorf("alloc_new_pack: %w", err), k.ExecmemFree(c, addr))
		}
		pack = &bpfPack{addr: addr, progs: map[uint64]bpfPackProg{}}
		bp.packs = append(bp.packs, pack)
		pos = 0
	}
	pack.setBits(pos, n, true)
	p := pack.addr + uint64(pos)<<bpfProgChunkShift
	pack.progs[p] = bpfPackProg{size, object}
	// bpf_arch_text_copy: text patching writes the image.
	return p, k.WriteText(p, size, object)
}

// bpfProgPackFree is bpf_prog_pack_free: the program's chunks are filled
// with trapping instructions (bpf_arch_text_invalidate) and cleared; an
// empty pack is freed (bpf_jit_free_exec).
func (k *Kernel) bpfProgPackFree(c CPU, addr uint64) error {
	bp := k.bpfPacks()
	c.Lock(bp.mu)
	defer c.Unlock(bp.mu)
	for i, pack := range bp.packs {
		if addr < pack.addr || addr >= pack.addr+bpfProgPackSize {
			continue
		}
		pr, ok := pack.progs[addr]
		if !ok {
			return fmt.Errorf("bpf_prog_pack_free(%#x): no program there: %w", addr, ErrInvalid)
		}
		delete(pack.progs, addr)
		pack.setBits(int((addr-pack.addr)>>bpfProgChunkShift), int(pr.size>>bpfProgChunkShift), false)
		if err := k.bpfPackRefill(pack, addr, pr.size); err != nil {
			return err
		}
		if pack.empty() {
			bp.packs = append(bp.packs[:i], bp.packs[i+1:]...)
			return k.ExecmemFree(c, pack.addr)
		}
		return nil
	}
	return fmt.Errorf("bpf_prog_pack_free(%#x): not in a pack: %w", addr, ErrInvalid)
}

// bpfPackRefill records what the pages of a freed image now hold: trap fill,
// or the text of a program still sharing the page (the model keeps one
// content value per page).
func (k *Kernel) bpfPackRefill(pack *bpfPack, addr, size uint64) error {
	ps := k.G.PageSize()
	starts := make([]uint64, 0, len(pack.progs))
	for a := range pack.progs {
		starts = append(starts, a)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for pg := addr &^ (ps - 1); pg < addr+size; pg += ps {
		content := ContentTrap
		for _, a := range starts {
			if p := pack.progs[a]; a < pg+ps && a+p.size > pg {
				content = p.object
				break
			}
		}
		if err := k.setContent(pg, ps, content); err != nil {
			return err
		}
	}
	return nil
}

// bpfPacks returns the pack list, created on first use.
func (k *Kernel) bpfPacks() *bpfPacks {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	defer k.bookMu.Unlock()
	if k.bpfPackList == nil {
		k.bpfPackList = &bpfPacks{mu: NewMutex("bpf pack_mutex")}
	}
	return k.bpfPackList
}

// BPFPacks is the number of bpf_prog_pack packs in use.
func (k *Kernel) BPFPacks() int {
	bp := k.bpfPacks()
	return len(bp.packs)
}
