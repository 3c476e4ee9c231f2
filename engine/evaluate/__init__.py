"""Evaluation: metrics tables and reports for trained students."""
