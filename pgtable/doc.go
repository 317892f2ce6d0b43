// Package pgtable holds translation tables as real 64-bit descriptors in table
// pages taken from simulated physical memory (physmem), and the operations the
// arm64 kernel performs on them: walk and translate, create a mapping with the
// largest legal leaf (__create_pgd_mapping), change attributes over a range
// (the pageattr walk), split leaves (split_pud, split_pmd, split_contpmd,
// split_contpte) and fold tables back into leaves.
//
// It knows nothing about policy: who may split, which lock is held, when TLBs
// are invalidated are the kernel package's business. Every descriptor load and
// store, and every table-page allocation and free, goes through a Door supplied
// by the caller, so a simulated CPU can interpose on each shared touch. Walks
// through the plain Direct door also keep a self-validating shadow of the
// table pointers beside non-leaf tables (shadow.go) and a walk cache
// (walkcache.go); neither changes what any operation does.
package pgtable
