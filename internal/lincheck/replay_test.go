package lincheck

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestReplay checks a history dumped by a failed run (LINCHECK_REPLAY=
// /tmp/lincheck-<seed>.json) and explains where it goes wrong. Without
// the variable it is skipped.
func TestReplay(t *testing.T) {
	path := os.Getenv("LINCHECK_REPLAY")
	if path == "" {
		t.Skip("set LINCHECK_REPLAY to a dumped history")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		ClientId int
		Input    Input
		Call     int64
		Output   Output
		Return   int64
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	ops := make([]porcupine.Operation, len(raw))
	for i, r := range raw {
		ops[i] = porcupine.Operation{ClientId: r.ClientId, Input: r.Input, Call: r.Call, Output: r.Output, Return: r.Return}
	}
	res := porcupine.CheckOperationsTimeout(Model(), ops, 30*time.Second)
	t.Logf("%d operations: %s", len(ops), res)
	if res != porcupine.Ok {
		explain(t, ops)
		t.Fail()
	}
}
