"""How a trading record performed: its figures (``figures``) and a self-contained HTML page of charts
(``page``, drawn by ``charts``), for a backtest over many sessions or a single day."""

from openbell.performance.figures import Figures, Record, backtest_record, figures_of
from openbell.performance.page import performance_page

__all__ = ["Figures", "Record", "backtest_record", "figures_of", "performance_page"]
