"""The foundation layer: what every other part of ncviz may use and which uses none of them.
No torch, no click here."""
