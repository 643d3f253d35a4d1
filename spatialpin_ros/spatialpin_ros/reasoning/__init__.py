"""Spatial question answering over 3D scene priors (ROS-free): questions to typed queries,
object references, geometric answers, SpatialPIN prompts, ZeroVLM views, two-view registration."""

from spatialpin_ros.reasoning.engine import SpatialQA
from spatialpin_ros.reasoning.geometric import Answer
from spatialpin_ros.reasoning.query import Query, QuestionError, parse_question

__all__ = ["Answer", "Query", "QuestionError", "SpatialQA", "parse_question"]
