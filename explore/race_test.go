//go:build race

package explore

// raceDetector: the exhaustive searches run one CPU at a time, so the race
// detector has nothing to find in them and slows them tenfold; under -race
// the tests run the real-mode stress tests and skip the long searches.
const raceDetector = true
