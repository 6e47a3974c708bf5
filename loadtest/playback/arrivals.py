"""A schedule as the virtual runner's arrivals: the very requests a live run sends, tokenized
the way the simulator tokenizes them."""

from collections.abc import Iterator

from loadtest.sim.tokenizer import chat_ids, encode
from loadtest.sim.virtual import VirtualRequest
from loadtest.workload.schedule import Schedule


def virtual_requests(schedule: Schedule) -> Iterator[VirtualRequest]:
    """One VirtualRequest per scheduled request, in order, id = the schedule's index.

    Prompt ids are what `vllm-sim` computes from the request a live run would send (the
    chat template included); lazily, so 100k prompts need not sit in memory. A closed-loop
    schedule's times are all 0: the runner sends each when a slot frees
    (`run_virtual(concurrency=...)`)."""
    workload = schedule.workload
    prompt_ids = schedule.prompt_encoder(encode)
    chat = workload.api == "chat"
    for request in schedule.requests:
        ids = prompt_ids(request)
        yield VirtualRequest(
            time=request.at_s,
            model=request.model,
            prompt_token_ids=chat_ids([("user", ids)]) if chat else ids,
            max_tokens=request.max_tokens,
            ignore_eos=workload.ignore_eos,
            seed=request.index,
            id=str(request.index),
        )
