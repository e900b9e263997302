"""The priced contract net between regional planners, as pure functions over each region's own data.

- `cells`: the coarse places and day windows that are all a peer ever learns of a region's demand;
- `market`: the records that cross between regions (offers, bids, awards, trades, one cost each);
- `region`: one region's continuous plan (an LP over its own cells), its shadow prices, its offers
  and bids, and its cost with a set of trades;
- `net`: the rounds (offer, bid, award, cost, commit only if the summed cost fell);
- `plans`: each region's own integer plan with the committed trades, through the usual allocator.

No sockets and no clock: the peer transport (`planner.peers`) carries the same records.
"""
