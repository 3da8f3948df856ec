"""Cross-platform account linkage.

Given accounts on several platforms and some known links (same person), find which accounts
belong to the same person without comparing all pairs:

- :mod:`crossrec.link.context` loads, once per model version, everything the signals read;
- :mod:`crossrec.link.mapping` learns maps between the platforms' CF spaces from known links;
- :mod:`crossrec.link.candidates` proposes a bounded set of pairs from vector searches;
- :mod:`crossrec.link.signals` computes the evidence of each candidate pair.

A pair is ``(a_row, b_row)`` of :class:`~crossrec.represent.profiles.AccountProfiles` row
numbers on two different platforms; everything is arrays, so the same code serves a batch of
millions of pairs and the one account of an online request.
"""
