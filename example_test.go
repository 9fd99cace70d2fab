package legion_test

import (
	"context"
	"fmt"
	"log"

	"github.com/legiondb/legion"
)

// A handler: a counter per key, tagged with its value.
const counter = `
function apply(event, state, ctx)
  state = state or { count = 0 }
  if event == "incr" then state.count = state.count + 1 end
  return state.count, state
end

function index(state, key)
  return { "count:" .. state.count }
end
`

func Example() {
	cfg := legion.DefaultConfig()
	cfg.InMemory = true // a real node would set DataDir instead
	db, err := legion.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if _, err := db.LoadScript([]byte(counter)); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"visits:home", "visits:home", "visits:about"} {
		out, err := db.Apply(ctx, []byte(key), []byte("incr"), legion.Consistent)
		if err != nil {
			log.Fatal(err)
		}
		n, _ := out.JSON()
		fmt.Printf("%s -> %s\n", key, n)
	}

	state, _, err := db.Get([]byte("visits:home"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", string(state))

	hits, err := db.Search(legion.SearchQuery{Tag: []byte("count:"), Count: 10})
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hits {
		fmt.Printf("tag %s: %s\n", h.Tag, h.Key)
	}
	// Output:
	// visits:home -> 1
	// visits:home -> 2
	// visits:about -> 1
	// state: {"count":2}
	// tag count:1: visits:about
	// tag count:2: visits:home
}
