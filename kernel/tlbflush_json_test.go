package kernel

import (
	"encoding/json"
	"testing"
)

// TLBICounts is indexed by kind and written as an object keyed by name.
func TestTLBICountsJSON(t *testing.T) {
	c := TLBICounts{TLBIVAALE1IS: 1, TLBIRVAALE1IS: 2, TLBIVMALLE1IS: 3, TLBIVAAE1IS: 4}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rvaale1is":2,"vaae1is":4,"vaale1is":1,"vmalle1is":3}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	var back TLBICounts
	if err := json.Unmarshal(b, &back); err != nil || back != c {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"tlbi":1}`), &back); err == nil {
		t.Fatal("unknown kind accepted")
	}
}
