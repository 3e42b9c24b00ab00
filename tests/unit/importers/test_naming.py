import re

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.definitions.steps import FLOW_ID
from orchestrator.importers.naming import IdAllocator, fold


def test_kestra_namespace_and_id_fold_to_a_path():
    assert fold("Company.Team.My-Flow") == "company/team/my-flow"


def test_characters_ids_refuse_become_underscores_and_no_segment_starts_with_a_dash():
    assert fold("f/folder/Flow Name!") == "f/folder/flow_name_"
    assert fold("-x.y") == "_-x/y"
    assert fold("a..b") == "a/_/b"


def test_names_that_fold_alike_get_numbered_suffixes_and_each_keeps_its_own():
    ids = IdAllocator()
    first, second = ids.id_for("team.flow"), ids.id_for("team/flow")
    assert (first, second) == ("team/flow", "team/flow_2")
    assert ids.id_for("team.flow") == first
    assert ids.renames() == {"team.flow": "team/flow", "team/flow": "team/flow_2"}


@given(st.lists(st.text(max_size=300), max_size=20))
def test_every_name_gets_a_distinct_valid_id(names):
    ids = IdAllocator()
    given_ids = {n: ids.id_for(n) for n in names}
    assert len(set(given_ids.values())) == len(given_ids)
    assert all(re.match(FLOW_ID, i) and len(i) <= 200 for i in given_ids.values())
