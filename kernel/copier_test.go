package kernel

import (
	"reflect"
	"testing"
)

type copyNode struct {
	name  string
	next  *copyNode // a cycle
	peer  *copyLeaf // shared with leaves[0]
	arr   [2]*copyLeaf
	val   copyLeaf
	leafs []*copyLeaf
	byID  map[int]*copyLeaf
	any   any
	fn    func() int
}

type copyLeaf struct {
	n   int
	tag string
}

// The deep copy keeps the source's sharing (a cycle, one leaf reached
// four ways, an interface holding a pointer) and shares nothing with the
// source but functions.
func TestCopierKeepsSharing(t *testing.T) {
	l0, l1 := &copyLeaf{1, "a"}, &copyLeaf{2, "b"}
	src := &copyNode{name: "n", peer: l0, arr: [2]*copyLeaf{l0, l1}, val: copyLeaf{3, "c"},
		leafs: []*copyLeaf{l0, l1}, byID: map[int]*copyLeaf{0: l0, 1: l1}, any: l1, fn: func() int { return 7 }}
	src.next = src
	c := copier{seen: map[seenKey]reflect.Value{}}
	var dst *copyNode
	c.copy(reflect.ValueOf(&dst).Elem(), reflect.ValueOf(src), planOf(reflect.TypeOf(src)))
	switch {
	case dst == src || dst.next != dst:
		t.Fatal("the cycle is not the copy's own")
	case dst.peer == l0 || dst.peer != dst.leafs[0] || dst.peer != dst.arr[0] || dst.peer != dst.byID[0]:
		t.Fatal("leaf 0 is not one shared copy")
	case dst.any.(*copyLeaf) != dst.leafs[1] || dst.leafs[1] == l1:
		t.Fatal("the interface does not hold the copy of leaf 1")
	case *dst.peer != *l0 || dst.val != src.val || dst.name != "n" || dst.fn() != 7:
		t.Fatal("values differ")
	}
	dst.peer.n = 99
	if l0.n != 1 {
		t.Fatal("the copy shares a leaf with the source")
	}
}
