"""Strength escalation keeps the first try the judges see, else the best one."""

from __future__ import annotations

from saekit.steer.concept.ladder import MIN_CONCEPT, MIN_FLUENCY, Try, pick


def _t(f, concept, fluency, overall):
    return Try(f, [f], {"concept_score": concept, "fluency": fluency, "overall": overall})


def test_first_visible_and_fluent_try_is_kept():
    tries = [_t(1, 0.0, 0.9, 0.0), _t(2, MIN_CONCEPT, MIN_FLUENCY, 0.3), _t(4, 0.9, 0.8, 0.8)]
    assert pick(tries) == 1  # the weakest strength that shows the concept, not the highest score


def test_unreadable_concept_is_not_visible_and_best_overall_wins_otherwise():
    tries = [_t(1, 0.0, 0.9, 0.0), _t(2, 0.1, 0.9, 0.15), _t(4, 0.9, MIN_FLUENCY / 2, 0.1)]
    assert not tries[2].visible()
    assert pick(tries) == 1
    assert pick([_t(1, 0.0, 0.9, 0.0), _t(2, 0.05, 0.2, 0.0)]) == 1  # tie on overall: more concept
