//go:build !race

package physmem

const raceEnabled = false
