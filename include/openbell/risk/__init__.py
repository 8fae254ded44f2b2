"""The risk state and the send gate: who may stop trading, and whether each order may leave.

- :mod:`~openbell.risk.state`: the :class:`RiskState` values and every allowed move between them (a leaf)
- :mod:`~openbell.risk.owner`: the live loop's one owner of the state in force
- :mod:`~openbell.risk.gate`: the send gate, consulted for every order on the loop and in the order workers
- :mod:`~openbell.risk.latch`: the gate as an order worker holds it (a leaf: workers import it alone)
"""
