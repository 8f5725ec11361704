"""newsbot's pipeline, one folder a step: ingest → index → search → answer (evaluation beside it).

A question goes: bot handler → `service.Services.answerer` (answer/answerer.py) → `search/hybrid.py`
→ `index/store.py` (Chroma) and `index/keywords.py` (BM25) → back up as passages → `answer/extractive.py`
(or `answer/llm.py`) writes the cited reply.
"""
