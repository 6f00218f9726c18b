"""Analyses behind the paper's figures, as commands that write figures
and the numbers behind them: ``tarf analyze dynamics`` (Fig. 3, 11, 12), ``identify``
(Fig. 4a, 13), ``ablate`` (Fig. 4b, 7) and ``architectures`` (Fig. 7, Table 12)."""
