"""Analyses behind the paper's figures (SPEC section 8), as commands that write figures
and the numbers behind them: ``tarf analyze identify`` (Fig. 4a, 13)."""
