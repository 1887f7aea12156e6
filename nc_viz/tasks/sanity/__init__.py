"""`ncviz sanity`: the model parameter randomisation test (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018) for both models of a pair."""
