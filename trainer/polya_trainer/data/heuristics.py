"""Pólya's heuristics (*How to Solve It*, "Short Dictionary of Heuristic") as prompt material.

``CATALOG`` is ordered: the first 16 entries are the ones most broadly useful for arithmetic
word problems (GSM8K), so ``heuristics.count: n`` takes a nested prefix of one fixed list.
It has 65 entries, one per entry of the Short Dictionary that gives the solver something to do
(the biographical and pedagogical entries, e.g. "Rules of teaching", are turned into the advice
they contain, as in "Pappus: analysis and synthesis"), so the paper's n = 32 and n = 64
ablations need no custom heuristics.
Descriptions and worked exemplars are written for this project. Each exemplar's solution
visibly follows its heuristic and ends with the answer in ``\\boxed{}``.

Prompts are chat *messages* only (``build_messages``, ``plain_messages``); the chat template is
applied by whoever owns the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from polya_trainer.spec import CATALOG_SIZE, HeuristicsSpec

__all__ = [
    "ANSWER_REQUEST", "CATALOG", "STAR", "Exemplar", "Heuristic", "build_messages", "get",
    "ids", "plain_messages", "select",
]

ANSWER_REQUEST = "Put the final answer in \\boxed{}."
"""Appended to every question in prompts."""

NONE_ID = "none"
"""Reserved id for "no heuristic" (the STaR arm and plain prompts)."""


@dataclass(frozen=True, slots=True)
class Exemplar:
    """A worked example: a question, a solution following the heuristic, the final answer."""

    question: str
    solution: str
    answer: str


@dataclass(frozen=True, slots=True)
class Heuristic:
    """One heuristic: id (stored with each sample), display name, how to apply it, exemplars."""

    id: str
    name: str
    description: str
    exemplars: tuple[Exemplar, ...] = field(default_factory=tuple)

    def instruction(self) -> str:
        """The instruction text that heads a prompt for this heuristic."""
        if self.id == NONE_ID:
            return "Solve the problem step by step. " + ANSWER_REQUEST
        return (
            f"Solve the problem using Pólya's heuristic \"{self.name}\". {self.description} "
            "Make the use of the heuristic visible in your solution, reason step by step, "
            "and end with the final answer in \\boxed{}."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dataset cards)."""
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "exemplars": [
                {"question": e.question, "solution": e.solution, "answer": e.answer}
                for e in self.exemplars
            ],
        }


def _h(id: str, name: str, description: str, *exemplars: tuple[str, str, str]) -> Heuristic:
    return Heuristic(id, name, description, tuple(Exemplar(*e) for e in exemplars))


# The catalog. Order matters: `count: n` takes the first n.
CATALOG: tuple[Heuristic, ...] = (
    _h(
        "decomposing_recombining", "Decomposing and recombining",
        "Split the problem into smaller parts that can be solved separately (different items, "
        "groups or time periods). Solve each part, label its result, then put the partial "
        "results together to answer the whole question.",
        ("A bakery sells muffins for $3 each and cookies for $2 each. On Monday it sold 40 "
         "muffins and 65 cookies. How much money did it take in on Monday?",
         "Decompose the sales into two parts.\n"
         "Part 1, muffins: 40 x $3 = $120.\n"
         "Part 2, cookies: 65 x $2 = $130.\n"
         "Recombine the parts: $120 + $130 = $250.\n"
         "The bakery took in \\boxed{250} dollars.",
         "250"),
        ("Maya reads 20 pages a day on weekdays and 35 pages a day on weekends. How many pages "
         "does she read in 2 weeks?",
         "Decompose the 2 weeks into weekdays and weekend days.\n"
         "Weekdays: 2 x 5 = 10 days, 10 x 20 = 200 pages.\n"
         "Weekend days: 2 x 2 = 4 days, 4 x 35 = 140 pages.\n"
         "Recombine: 200 + 140 = 340 pages.\n"
         "She reads \\boxed{340} pages.",
         "340"),
    ),
    _h(
        "working_backwards", "Working backwards",
        "Start from the final state or the result the problem gives and undo each operation in "
        "reverse order (an addition becomes a subtraction, a doubling becomes a halving) until "
        "you reach the unknown starting value.",
        ("Tom had some marbles. He gave 12 to his sister, then bought twice as many as he had "
         "left, and now he has 54 marbles. How many marbles did he have at first?",
         "Work backwards from the end, where Tom has 54 marbles.\n"
         "Buying twice as many as he had left means he ended with 3 times what he had left, "
         "so before buying he had 54 / 3 = 18.\n"
         "Before giving 12 to his sister he had 18 + 12 = 30.\n"
         "Tom started with \\boxed{30} marbles.",
         "30"),
        ("After spending half of her money on a jacket and then $15 on lunch, Ana has $25 "
         "left. How much money did she start with?",
         "Work backwards from the $25 she has left.\n"
         "Undo the lunch: 25 + 15 = $40 before lunch.\n"
         "Undo spending half: 40 x 2 = $80 before the jacket.\n"
         "Ana started with \\boxed{80} dollars.",
         "80"),
    ),
    _h(
        "setting_up_equations", "Setting up equations",
        "Name each unknown with a letter, translate every condition of the problem into an "
        "equation, solve the equations, and read the solution back in the words of the "
        "problem.",
        ("The sum of two numbers is 48 and one of them is 6 more than the other. What is the "
         "larger number?",
         "Let x be the smaller number; the larger is x + 6.\n"
         "Equation: x + (x + 6) = 48, so 2x + 6 = 48, 2x = 42, x = 21.\n"
         "The larger number is 21 + 6 = 27.\n"
         "The answer is \\boxed{27}.",
         "27"),
        ("An adult ticket costs $12 and a child ticket costs $7. A group bought 15 tickets for "
         "$145. How many adult tickets did they buy?",
         "Let a be the number of adult tickets and c the number of child tickets.\n"
         "Equations: a + c = 15 and 12a + 7c = 145.\n"
         "Substitute c = 15 - a: 12a + 105 - 7a = 145, so 5a = 40 and a = 8.\n"
         "They bought \\boxed{8} adult tickets.",
         "8"),
    ),
    _h(
        "logical_step_by_step", "Logical step-by-step justification",
        "Carry out the solution in small steps. State each step as a short claim, say why it "
        "follows from the data or from earlier steps, and check it before moving on.",
        ("A farmer has 3 fields. Each field has 12 rows of corn with 25 plants per row, and "
         "each plant gives 2 ears of corn. How many ears of corn does the farmer harvest?",
         "Step 1: plants in one field = rows x plants per row = 12 x 25 = 300.\n"
         "Step 2: all fields have the same layout, so plants in total = 3 x 300 = 900.\n"
         "Step 3: each plant gives 2 ears, so ears = 900 x 2 = 1800.\n"
         "The farmer harvests \\boxed{1800} ears of corn.",
         "1800"),
        ("A printer prints 18 pages per minute. How many minutes does it take to print 6 copies "
         "of a 45-page report?",
         "Step 1: pages to print = copies x pages per copy = 6 x 45 = 270.\n"
         "Step 2: time = pages / pages per minute = 270 / 18 = 15 minutes.\n"
         "Check: 15 x 18 = 270, which matches step 1.\n"
         "It takes \\boxed{15} minutes.",
         "15"),
    ),
    _h(
        "look_at_unknown", "Look at the unknown",
        "Ask first what exactly is wanted. Write down the unknown and its unit, find which "
        "quantities it can be computed from directly, and work towards those quantities.",
        ("A car travels 150 miles on 5 gallons of gas, and gas costs $4 per gallon. How much "
         "does the gas cost for a 420-mile trip?",
         "The unknown is the cost of gas for 420 miles, in dollars.\n"
         "Cost = gallons x $4, so I need the gallons for 420 miles.\n"
         "Gallons = miles / miles per gallon, and miles per gallon = 150 / 5 = 30.\n"
         "Gallons = 420 / 30 = 14, so cost = 14 x 4 = $56.\n"
         "The gas costs \\boxed{56} dollars.",
         "56"),
        ("A class of 28 students is split into teams of 4. Each team needs 3 markers, and "
         "markers come in boxes of 6. How many boxes are needed?",
         "The unknown is a number of whole boxes.\n"
         "Boxes depend on the number of markers, which depends on the number of teams.\n"
         "Teams = 28 / 4 = 7; markers = 7 x 3 = 21.\n"
         "Boxes = 21 / 6 = 3.5, and only whole boxes can be bought, so 4 boxes.\n"
         "\\boxed{4} boxes are needed.",
         "4"),
    ),
    _h(
        "use_all_data", "Did you use all the data?",
        "List every number and condition the problem gives and make sure each one is used, or "
        "deliberately set aside as irrelevant. A datum you have not used often points to a "
        "missing step.",
        ("Lena buys 4 notebooks at $2.50 each and a pen for $1.75. She pays with a $20 bill. "
         "How much change does she get?",
         "Data: 4 notebooks, $2.50 each, a pen for $1.75, a $20 bill.\n"
         "Notebooks: 4 x 2.50 = $10.00 (uses 4 and $2.50).\n"
         "Add the pen: 10.00 + 1.75 = $11.75 (uses $1.75).\n"
         "Change: 20 - 11.75 = $8.25 (uses $20). All data used.\n"
         "Her change is \\boxed{8.25} dollars.",
         "8.25"),
        ("A tank holds 500 liters and is 40% full. A pump adds 25 liters per minute. How many "
         "minutes until the tank is full?",
         "Data: capacity 500 L, 40% full, 25 L per minute.\n"
         "Water now: 40% of 500 = 200 L (uses 500 and 40%).\n"
         "Still needed: 500 - 200 = 300 L.\n"
         "Time: 300 / 25 = 12 minutes (uses 25). Every datum was used.\n"
         "The tank is full after \\boxed{12} minutes.",
         "12"),
    ),
    _h(
        "auxiliary_elements", "Introduce auxiliary elements",
        "Introduce a helpful quantity that the problem does not mention, such as a rate per "
        "unit, a total amount of work, or a price per item, so that the given data connect "
        "through it.",
        ("If 6 workers can paint a fence in 10 hours, how many hours would 4 workers take at "
         "the same rate?",
         "Auxiliary element: the total work, measured in worker-hours.\n"
         "Total work = 6 workers x 10 hours = 60 worker-hours.\n"
         "With 4 workers: 60 / 4 = 15 hours.\n"
         "They would take \\boxed{15} hours.",
         "15"),
        ("Three pounds of apples cost $4.50. How much do 7 pounds of apples cost?",
         "Auxiliary element: the price of one pound.\n"
         "Price per pound = 4.50 / 3 = $1.50.\n"
         "Seven pounds: 7 x 1.50 = $10.50.\n"
         "They cost \\boxed{10.50} dollars.",
         "10.50"),
    ),
    _h(
        "specialization", "Specialization",
        "Try special, simpler cases first: small numbers, a single item, one time period. "
        "Solve them, notice what they have in common, then scale up to the actual problem.",
        ("A staircase is built from blocks: step 1 uses 1 block, step 2 uses 2 blocks, and so "
         "on. How many blocks are needed for a staircase with 20 steps?",
         "Special cases: 1 step needs 1 block, 2 steps need 1 + 2 = 3, 3 steps need 6, "
         "4 steps need 10.\n"
         "These fit n(n + 1) / 2: for n = 4, 4 x 5 / 2 = 10.\n"
         "For 20 steps: 20 x 21 / 2 = 210 blocks.\n"
         "The staircase needs \\boxed{210} blocks.",
         "210"),
        ("Each cut of a rope takes 2 minutes. How long does it take to cut a rope into 9 "
         "pieces?",
         "Special cases: 2 pieces need 1 cut, 3 pieces need 2 cuts, 4 pieces need 3 cuts.\n"
         "So n pieces need n - 1 cuts; 9 pieces need 8 cuts.\n"
         "Time: 8 x 2 = 16 minutes.\n"
         "It takes \\boxed{16} minutes.",
         "16"),
    ),
    _h(
        "analogy", "Analogy",
        "Think of a similar problem you already know how to solve, one with the same structure "
        "but different objects or numbers. Recall its method and apply the same method here.",
        ("A tap fills a 120-liter barrel in 8 minutes. How long does it take to fill a "
         "300-liter barrel?",
         "This is like a car at constant speed, where distance = speed x time.\n"
         "Here, volume = rate x time, with rate = 120 / 8 = 15 liters per minute.\n"
         "Time = volume / rate = 300 / 15 = 20 minutes.\n"
         "It takes \\boxed{20} minutes.",
         "20"),
        ("A shop raises a $40 price by 25% and then lowers the new price by 20%. What is the "
         "final price?",
         "This is like successive interest rates: each percent change multiplies the amount.\n"
         "Raise by 25%: 40 x 1.25 = $50.\n"
         "Lower by 20%: 50 x 0.8 = $40.\n"
         "The final price is \\boxed{40} dollars.",
         "40"),
    ),
    _h(
        "restate_problem", "Restate the problem",
        "Say the problem again in your own words, stripping the story down to the mathematical "
        "relations between the quantities. A cleaner statement often shows what to compute.",
        ("Jake is 3 times as old as his daughter. In 12 years he will be twice as old as she "
         "will be. How old is Jake now?",
         "Restated: find J and d with J = 3d and J + 12 = 2(d + 12).\n"
         "Substitute: 3d + 12 = 2d + 24, so d = 12.\n"
         "Then J = 3 x 12 = 36.\n"
         "Jake is \\boxed{36} years old.",
         "36"),
        ("A store gives 1 free bottle for every 5 bottles bought. Sam wants 30 bottles in total. "
         "How many bottles must he pay for?",
         "Restated: every group of 6 bottles costs the price of 5.\n"
         "30 bottles make 30 / 6 = 5 groups.\n"
         "He pays for 5 x 5 = 25 bottles.\n"
         "Sam must pay for \\boxed{25} bottles.",
         "25"),
    ),
    _h(
        "examine_guess", "Examine your guess",
        "Make a reasonable guess, test it against every condition, and use how far off it is "
        "to improve the next guess. Repeat until a guess satisfies all the conditions.",
        ("A farm has chickens and cows: 20 animals with 56 legs in total. How many cows are "
         "there?",
         "Guess 10 cows and 10 chickens: 40 + 20 = 60 legs, 4 too many.\n"
         "Swapping one cow for a chicken removes 2 legs, so swap 2: 8 cows, 12 chickens.\n"
         "Check: 8 x 4 + 12 x 2 = 32 + 24 = 56 legs, 20 animals.\n"
         "There are \\boxed{8} cows.",
         "8"),
        ("The product of two consecutive whole numbers is 132. What is the smaller number?",
         "Guess 10: 10 x 11 = 110, too small.\n"
         "Guess 12: 12 x 13 = 156, too big.\n"
         "Guess 11: 11 x 12 = 132, correct.\n"
         "The smaller number is \\boxed{11}.",
         "11"),
    ),
    _h(
        "related_problem", "Do you know a related problem?",
        "Recall a problem you have solved before with the same or a similar unknown. Reuse its "
        "result or its method as a step towards this one.",
        ("The average of 5 test scores is 82. What score on a sixth test would raise the "
         "average to 84?",
         "Related problem: finding a total from an average, total = average x count.\n"
         "Current total: 5 x 82 = 410.\n"
         "Needed total for six tests: 6 x 84 = 504.\n"
         "Sixth score: 504 - 410 = 94.\n"
         "The sixth test needs \\boxed{94}.",
         "94"),
        ("A train leaves at 9:40 a.m. and arrives at 1:15 p.m. the same day. How many minutes "
         "does the trip take?",
         "Related problem: elapsed time, solved by counting up to whole hours.\n"
         "9:40 to 10:00 is 20 minutes; 10:00 to 1:00 is 3 hours = 180 minutes; "
         "1:00 to 1:15 is 15 minutes.\n"
         "Total: 20 + 180 + 15 = 215 minutes.\n"
         "The trip takes \\boxed{215} minutes.",
         "215"),
    ),
    _h(
        "draw_figure", "Draw a figure",
        "Make a sketch, diagram, table or number line of the situation (in text if needed), "
        "label it with the data, and read the relations off the figure.",
        ("A rectangular garden is 12 m long and 8 m wide. A path 1 m wide runs all around the "
         "outside of the garden. What is the area of the path in square meters?",
         "Figure: an outer rectangle (garden plus path) around an inner rectangle (garden).\n"
         "Outer sides: 12 + 1 + 1 = 14 m and 8 + 1 + 1 = 10 m, area 14 x 10 = 140.\n"
         "Inner area: 12 x 8 = 96.\n"
         "Path = outer - inner = 140 - 96 = 44 square meters.\n"
         "The path's area is \\boxed{44}.",
         "44"),
        ("Posts stand every 5 meters along a straight 40-meter fence, with one post at each "
         "end. How many posts are there?",
         "Number line of the posts: 0, 5, 10, 15, 20, 25, 30, 35, 40.\n"
         "The figure shows 40 / 5 = 8 gaps and one more post than gaps.\n"
         "Posts: 8 + 1 = 9.\n"
         "There are \\boxed{9} posts.",
         "9"),
    ),
    _h(
        "check_result", "Check the result",
        "After finding an answer, verify it: substitute it back into every condition, check "
        "that its size and unit are reasonable, and fix any step that fails the check.",
        ("Mia is 4 years older than twice her brother's age, and their ages add up to 31. How "
         "old is Mia?",
         "Let b be the brother's age; Mia is 2b + 4.\n"
         "b + 2b + 4 = 31, so 3b = 27 and b = 9; Mia is 2 x 9 + 4 = 22.\n"
         "Check: 22 is 4 more than twice 9, and 22 + 9 = 31. Both conditions hold.\n"
         "Mia is \\boxed{22}.",
         "22"),
        ("A shirt costs $25 after a 20% discount. What was the original price?",
         "After the discount the price is 80% of the original: 0.8p = 25, so p = 31.25.\n"
         "Check: 20% of 31.25 is 6.25, and 31.25 - 6.25 = 25. Correct, and it is above $25 "
         "as it should be.\n"
         "The original price was \\boxed{31.25} dollars.",
         "31.25"),
    ),
    _h(
        "derive_differently", "Derive the result differently",
        "Solve the problem by two different routes (for example item by item and in total, or "
        "forwards and backwards) and confirm that both routes give the same answer.",
        ("A box holds 6 rows of 8 chocolates. Kim eats 2 rows and then gives away 10 "
         "chocolates. How many chocolates remain?",
         "Route 1: total 6 x 8 = 48; eaten 2 x 8 = 16; 48 - 16 = 32; 32 - 10 = 22.\n"
         "Route 2: 6 - 2 = 4 rows remain, 4 x 8 = 32; 32 - 10 = 22.\n"
         "Both routes agree.\n"
         "\\boxed{22} chocolates remain.",
         "22"),
        ("Pens cost $1.20 each, or $10 for a pack of 10. How much is saved by buying 30 pens "
         "in packs instead of one at a time?",
         "Route 1: singly 30 x 1.20 = $36; in packs 3 x 10 = $30; saving 36 - 30 = $6.\n"
         "Route 2: a pen in a pack costs $1.00, saving $0.20 per pen; 30 x 0.20 = $6.\n"
         "Both routes agree.\n"
         "The saving is \\boxed{6} dollars.",
         "6"),
    ),
    _h(
        "auxiliary_problem", "Auxiliary problem",
        "When the problem is hard to attack directly, first solve a helper problem whose answer "
        "is a stepping stone (a rate, a total, a value for one unit), then use it to solve the "
        "original problem.",
        ("Pipe A fills a pool in 6 hours and pipe B fills it in 3 hours. How many hours do "
         "they take working together?",
         "Auxiliary problem: what part of the pool does each pipe fill in one hour?\n"
         "A fills 1/6, B fills 1/3 = 2/6, together 3/6 = 1/2 of the pool per hour.\n"
         "Back to the original: filling 1 pool at 1/2 per hour takes 2 hours.\n"
         "Together they take \\boxed{2} hours.",
         "2"),
        ("A recipe for 4 people uses 300 g of flour. How many grams of flour are needed for "
         "10 people?",
         "Auxiliary problem: how much flour for one person? 300 / 4 = 75 g.\n"
         "Original problem: 10 x 75 = 750 g.\n"
         "\\boxed{750} grams are needed.",
         "750"),
    ),
    # ---- beyond the first 16: still useful, less central to arithmetic word problems
    _h(
        "generalization", "Generalization",
        "Replace the specific numbers with general ones, solve the general problem (its "
        "structure is often easier to see), then substitute the specific values.",
        ("What is the sum of all whole numbers from 1 to 100?",
         "General problem: 1 + 2 + ... + n. Pair the first and last terms: each pair sums to "
         "n + 1 and there are n / 2 pairs, so the sum is n(n + 1) / 2.\n"
         "For n = 100: 100 x 101 / 2 = 5050.\n"
         "The sum is \\boxed{5050}.",
         "5050"),
        ("Each of 7 people shakes hands once with every other person. How many handshakes are "
         "there?",
         "General problem: n people. Each shakes n - 1 hands and every handshake is counted "
         "twice, so there are n(n - 1) / 2.\n"
         "For n = 7: 7 x 6 / 2 = 21.\n"
         "There are \\boxed{21} handshakes.",
         "21"),
    ),
    _h(
        "variation_of_problem", "Variation of the problem",
        "Change the problem a little (drop a condition, change a number, swap what is given "
        "and what is asked), solve the varied problem, and use what it teaches you to return "
        "to the original.",
        ("A number is doubled and then 7 is added, giving 43. What is the number?",
         "Variation: without the + 7, doubling a number to get 36 gives 18.\n"
         "The original differs by the + 7, so first remove it: 43 - 7 = 36.\n"
         "Then halve, as in the variation: 36 / 2 = 18.\n"
         "The number is \\boxed{18}.",
         "18"),
        ("How many multiples of 6 are there from 1 to 100?",
         "Variation: from 1 to 60 the multiples are 6, 12, ..., 60, which is 60 / 6 = 10.\n"
         "Back to 100: the largest multiple of 6 not above 100 is 96 = 6 x 16.\n"
         "So there are 16 multiples.\n"
         "The answer is \\boxed{16}.",
         "16"),
    ),
    _h(
        "bright_idea", "Bright idea",
        "Look for a simplifying insight (a clever regrouping, a hidden pattern, a point of "
        "view) that makes most of the work unnecessary. State the idea, then verify it.",
        ("Compute 25 x 36 x 4.",
         "Bright idea: regroup so that 25 meets 4, because 25 x 4 = 100.\n"
         "25 x 36 x 4 = (25 x 4) x 36 = 100 x 36 = 3600.\n"
         "The product is \\boxed{3600}.",
         "3600"),
        ("In a knockout tournament with 100 teams, every game eliminates exactly one team. How "
         "many games are played to find the champion?",
         "Bright idea: count eliminations instead of rounds.\n"
         "Every team except the champion is eliminated exactly once, and each game eliminates "
         "one team, so there are 100 - 1 = 99 games.\n"
         "\\boxed{99} games are played.",
         "99"),
    ),
    _h(
        "symmetry", "Symmetry",
        "Notice when quantities play interchangeable roles or when a situation is balanced. "
        "Treat equal parts alike and use the balance to save work.",
        ("Two friends split an $84 bill equally, and each adds a $6 tip. How much does each "
         "friend pay in total?",
         "The two friends play symmetric roles, so each pays the same amount.\n"
         "Each share of the bill: 84 / 2 = $42.\n"
         "Each pays 42 + 6 = $48.\n"
         "Each friend pays \\boxed{48} dollars.",
         "48"),
        ("What is the average of the numbers 37, 41, 45, 49 and 53?",
         "The numbers are symmetric around 45: 37 and 53 are both 8 away, 41 and 49 both 4 "
         "away.\n"
         "The deviations cancel in pairs, so the average is the middle value, 45.\n"
         "The average is \\boxed{45}.",
         "45"),
    ),
    _h(
        "indirect_proof", "Indirect reasoning",
        "Assume a candidate answer, follow its consequences, and rule out every candidate that "
        "contradicts a condition. The candidate that survives is the answer.",
        ("Sara has only nickels and dimes: 12 coins worth 85 cents. How many dimes does she "
         "have?",
         "Suppose she has 6 dimes: 6 x 10 + 6 x 5 = 90 cents, which contradicts 85.\n"
         "Each dime fewer (and nickel more) lowers the value by 5 cents, so 6 is too many.\n"
         "Suppose 5 dimes: 5 x 10 + 7 x 5 = 50 + 35 = 85 cents. No contradiction.\n"
         "She has \\boxed{5} dimes.",
         "5"),
        ("A number between 10 and 20 is odd, is not prime, and is divisible by 5. What is the "
         "number?",
         "Candidates that are odd: 11, 13, 15, 17, 19.\n"
         "Assume it is 11, 13, 17 or 19: each is prime, contradicting the conditions.\n"
         "Only 15 remains, and it is divisible by 5.\n"
         "The number is \\boxed{15}.",
         "15"),
    ),
    _h(
        "induction", "Induction: find the pattern",
        "Work out the first few cases, find the rule that takes one case to the next, check the "
        "rule on another case, then apply it directly to the case asked for.",
        ("A plant is 3 cm tall and grows 4 cm each week. How tall is it after 10 weeks?",
         "Week 0: 3 cm; week 1: 7 cm; week 2: 11 cm.\n"
         "Rule: height after w weeks = 3 + 4w. Check week 2: 3 + 8 = 11, correct.\n"
         "Week 10: 3 + 40 = 43 cm.\n"
         "The plant is \\boxed{43} cm tall.",
         "43"),
        ("A bacteria culture starts with 5 cells and doubles every hour. How many cells are "
         "there after 6 hours?",
         "Hour 0: 5; hour 1: 10; hour 2: 20; hour 3: 40.\n"
         "Rule: cells after h hours = 5 x 2^h. Check hour 3: 5 x 8 = 40, correct.\n"
         "Hour 6: 5 x 64 = 320.\n"
         "There are \\boxed{320} cells.",
         "320"),
    ),
    _h(
        "separate_conditions", "Separate the parts of the condition",
        "Break the condition into its separate clauses, write each on its own line, and "
        "handle them one at a time so that nothing is merged or forgotten.",
        ("A school orders 20 boxes of pencils with 25 pencils in each box. 15% of the pencils "
         "are red and the rest are blue. How many blue pencils are there?",
         "Clause 1: 20 boxes of 25 pencils, so 20 x 25 = 500 pencils.\n"
         "Clause 2: 15% are red, so 0.15 x 500 = 75 red pencils.\n"
         "Clause 3: the rest are blue, so 500 - 75 = 425.\n"
         "There are \\boxed{425} blue pencils.",
         "425"),
        ("Leo earns $15 per hour for the first 40 hours of a week and 1.5 times that rate for "
         "every hour beyond 40. He worked 46 hours. How much did he earn?",
         "Part 1, regular hours: 40 x 15 = $600.\n"
         "Part 2, overtime rate: 1.5 x 15 = $22.50 per hour.\n"
         "Part 3, overtime hours: 46 - 40 = 6, paying 6 x 22.50 = $135.\n"
         "Total: 600 + 135 = $735.\n"
         "Leo earned \\boxed{735} dollars.",
         "735"),
    ),
    _h(
        "notation", "Choose good notation",
        "Pick short, suggestive symbols for the quantities (p for a price, w for a width), "
        "write the relations compactly with them, and keep the notation consistent to the end.",
        ("A coffee costs $3 more than a muffin. Two coffees and three muffins cost $21. How "
         "much does a coffee cost?",
         "Notation: m = price of a muffin, c = price of a coffee, with c = m + 3.\n"
         "2c + 3m = 21 becomes 2(m + 3) + 3m = 21, so 5m + 6 = 21 and m = 3.\n"
         "c = 3 + 3 = 6.\n"
         "A coffee costs \\boxed{6} dollars.",
         "6"),
        ("A rectangle's length is 3 times its width and its perimeter is 64 cm. What is its "
         "area in square centimeters?",
         "Notation: w = width, l = length = 3w, P = perimeter, A = area.\n"
         "P = 2(l + w) = 2(3w + w) = 8w = 64, so w = 8 and l = 24.\n"
         "A = l x w = 24 x 8 = 192.\n"
         "The area is \\boxed{192} square centimeters.",
         "192"),
    ),
    # ---- From here on: the rest of the Short Dictionary (entries 25-65), in its order of
    # usefulness for word problems as judged for this project. Descriptions are our own.
    _h(
        "use_the_result", "Can you use the result?",
        "Once a part of the problem is solved, ask what else that result gives you: reuse a "
        "computed quantity (a rate, a unit price, a total) for the next question instead of "
        "starting again.",
        ("A car uses 6 liters of fuel per 100 km. How many liters does it need for a 450 km "
         "trip and then a 150 km trip?",
         "First result: fuel per km = 6 / 100 = 0.06 liters.\n"
         "Use it for the 450 km trip: 450 x 0.06 = 27 liters.\n"
         "Use it again for the 150 km trip: 150 x 0.06 = 9 liters.\n"
         "Total: 27 + 9 = 36 liters.\n"
         "The car needs \\boxed{36} liters.",
         "36"),
        ("Five notebooks cost $20. How much do 8 notebooks cost?",
         "Result of the first step: one notebook costs 20 / 5 = $4.\n"
         "Using that result: 8 notebooks cost 8 x 4 = $32.\n"
         "They cost \\boxed{32} dollars.",
         "32"),
    ),
    _h(
        "pappus", "Pappus: analysis and synthesis",
        "Analysis: assume the unknown is found and ask what it follows from, and what that "
        "follows from, until you reach the data. Synthesis: retrace that chain forwards, from "
        "the data to the unknown, computing each link.",
        ("Tom wants $90 in savings after 6 weeks and already has $30. How much must he save "
         "each week?",
         "Analysis: $90 at the end follows from $30 now plus 6 equal weekly savings; so the "
         "weekly amount follows from the amount still missing.\n"
         "Synthesis: missing = 90 - 30 = $60; weekly = 60 / 6 = $10.\n"
         "He must save \\boxed{10} dollars a week.",
         "10"),
        ("A tank holds 240 liters. A pipe fills it at 8 liters per minute and it is already a "
         "quarter full. How many minutes until it is full?",
         "Analysis: the time follows from the volume still needed and the rate; the volume "
         "needed follows from the capacity and what is already in.\n"
         "Synthesis: already in = 240 / 4 = 60 liters; needed = 240 - 60 = 180 liters; time = "
         "180 / 8 = 22.5 minutes.\n"
         "It takes \\boxed{22.5} minutes.",
         "22.5"),
    ),
    _h(
        "descartes", "Descartes: from the simplest to the complex",
        "Divide the difficulty into as many parts as needed, order them from the simplest to "
        "the most complex, solve them in that order, and finish with a review that nothing was "
        "left out.",
        ("A shop sells pens at $2 each and packs of 10 pens at $15. How much do 25 pens cost "
         "if you buy as many packs as possible?",
         "Simplest part: how many packs fit in 25 pens? 25 // 10 = 2 packs (20 pens).\n"
         "Next: the loose pens, 25 - 20 = 5 pens.\n"
         "Then the costs: 2 x 15 = $30 and 5 x 2 = $10.\n"
         "Review: 20 + 5 = 25 pens, all counted. Total 30 + 10 = $40.\n"
         "They cost \\boxed{40} dollars.",
         "40"),
        ("A train leaves at 9:40 and arrives at 13:15. How many minutes is the trip?",
         "Simplest part: 9:40 to 10:00 is 20 minutes.\n"
         "Next: 10:00 to 13:00 is 3 hours = 180 minutes.\n"
         "Last: 13:00 to 13:15 is 15 minutes.\n"
         "Review and combine: 20 + 180 + 15 = 215 minutes.\n"
         "The trip takes \\boxed{215} minutes.",
         "215"),
    ),
    _h(
        "leibniz", "Leibniz: systematic enumeration",
        "When the possibilities are few, list every one of them in a fixed order so that none "
        "is missed or counted twice, then count or test them.",
        ("How many two-digit numbers have digits that add up to 5?",
         "List them by the tens digit, in order: 14, 23, 32, 41, 50.\n"
         "Tens digit 1 to 5, one number each; no other tens digit works.\n"
         "There are \\boxed{5} such numbers.",
         "5"),
        ("In how many ways can you pay 10 cents using 1-cent and 5-cent coins?",
         "Enumerate by the number of 5-cent coins: zero (ten 1-cent coins), one (five 1-cent "
         "coins), two (no 1-cent coins).\n"
         "Three 5-cent coins would be too much, so the list is complete.\n"
         "There are \\boxed{3} ways.",
         "3"),
    ),
    _h(
        "bolzano", "Bolzano: state the plan, then follow it",
        "Before computing, say in one or two sentences how the solution will go (what is found "
        "first and why it leads to the unknown); then carry out exactly that plan, so the "
        "method is visible, not only the result.",
        ("A baker makes 12 trays of 24 cookies and sells them in bags of 8. How many bags does "
         "he fill?",
         "Plan: find the number of cookies, then divide by the bag size.\n"
         "Cookies: 12 x 24 = 288.\n"
         "Bags: 288 / 8 = 36.\n"
         "He fills \\boxed{36} bags.",
         "36"),
        ("Ana reads 15 pages a day. Her book has 360 pages and she has read 90. How many more "
         "days does she need?",
         "Plan: find the pages left, then divide by the daily rate.\n"
         "Pages left: 360 - 90 = 270.\n"
         "Days: 270 / 15 = 18.\n"
         "She needs \\boxed{18} more days.",
         "18"),
    ),
    _h(
        "carrying_out", "Carrying out the plan: check each step",
        "Carry out the plan one step at a time and check every step as it is taken: is the "
        "operation the right one, is the arithmetic right, does the number make sense?",
        ("A hall has 18 rows of 22 seats. 350 tickets are sold. How many seats stay empty?",
         "Step 1: seats = 18 x 22 = 396. Check: 18 x 20 = 360 and 18 x 2 = 36, 396 correct.\n"
         "Step 2: empty = 396 - 350 = 46. Check: 350 + 46 = 396, correct.\n"
         "\\boxed{46} seats stay empty.",
         "46"),
        ("A recipe needs 250 g of flour per cake. How many whole cakes can be made with "
         "2.2 kg of flour?",
         "Step 1: 2.2 kg = 2200 g. Check: 1 kg = 1000 g, so correct.\n"
         "Step 2: 2200 / 250 = 8.8. Check: 250 x 8 = 2000 and 250 x 9 = 2250 > 2200.\n"
         "Step 3: only whole cakes count, so 8.\n"
         "\\boxed{8} cakes can be made.",
         "8"),
    ),
    _h(
        "condition", "What is the condition?",
        "State the condition in your own words: what must the unknown satisfy? Write each "
        "requirement the problem imposes, then look for the value that meets all of them.",
        ("I am thinking of a number. Doubled and increased by 7 it gives 31. What is it?",
         "Condition: 2 x (number) + 7 = 31.\n"
         "So 2 x (number) = 24 and the number is 12.\n"
         "Check against the condition: 2 x 12 + 7 = 31.\n"
         "The number is \\boxed{12}.",
         "12"),
        ("A rope is cut into two pieces; one piece is 4 m longer than the other and the rope "
         "is 20 m long. How long is the shorter piece?",
         "Conditions: the pieces add to 20 m, and long = short + 4.\n"
         "short + (short + 4) = 20, so 2 x short = 16 and short = 8.\n"
         "The shorter piece is \\boxed{8} m.",
         "8"),
    ),
    _h(
        "contradictory", "Could the condition be contradictory?",
        "Before (or while) solving, ask whether the conditions can all hold at once: check "
        "bounds and consistency, and use the check to rule out impossible readings or values.",
        ("A class has 30 students; 18 play football and 15 play chess, and every student plays "
         "at least one. How many play both?",
         "18 + 15 = 33 is more than 30: not contradictory only if some students are counted "
         "twice, i.e. play both.\n"
         "Both = 33 - 30 = 3.\n"
         "\\boxed{3} students play both.",
         "3"),
        ("Sam has only $2 and $5 bills, 7 bills in all, worth $26. How many $5 bills does he "
         "have?",
         "Consistency bounds: 7 bills are worth between $14 (all $2) and $35 (all $5); $26 is "
         "in range, so a solution can exist.\n"
         "Each $5 bill instead of a $2 adds $3: (26 - 14) / 3 = 4.\n"
         "He has \\boxed{4} five-dollar bills.",
         "4"),
    ),
    _h(
        "corollary", "Corollary: one more consequence",
        "After a result is obtained, draw the further consequence the question needs from it "
        "at little extra cost, instead of solving a new problem.",
        ("A square has a perimeter of 36 cm. What is its area?",
         "Result: the side is 36 / 4 = 9 cm.\n"
         "Corollary: the area follows at once, 9 x 9 = 81.\n"
         "The area is \\boxed{81} square centimeters.",
         "81"),
        ("Three friends share a bill equally and each pays $14. A fourth friend joins and the "
         "same bill is shared by four. How much does each pay now?",
         "Result: the bill is 3 x 14 = $42.\n"
         "Corollary: shared by four, each pays 42 / 4 = $10.50.\n"
         "Each pays \\boxed{10.5} dollars.",
         "10.5"),
    ),
    _h(
        "derive_from_data", "Could you derive something useful from the data?",
        "Work forwards: compute whatever the data give directly (totals, differences, rates), "
        "and keep the results that bring you closer to the unknown.",
        ("A farmer has 12 cows and twice as many sheep. Each animal eats 3 kg of hay a day. "
         "How much hay does the farm need each day?",
         "From the data: sheep = 2 x 12 = 24; animals = 12 + 24 = 36.\n"
         "From that: hay = 36 x 3 = 108 kg.\n"
         "The farm needs \\boxed{108} kg of hay a day.",
         "108"),
        ("Mia ran 3 km on Monday, 5 km on Tuesday and 4 km on Wednesday. What was her average "
         "distance per day?",
         "From the data: total = 3 + 5 + 4 = 12 km over 3 days.\n"
         "Average = 12 / 3 = 4 km.\n"
         "She ran \\boxed{4} km a day on average.",
         "4"),
    ),
    _h(
        "definition", "Go back to definitions",
        "Replace a term of the problem by its definition (average, percent, perimeter, profit, "
        "speed) and work with what the definition says.",
        ("The average of four numbers is 15. Three of them are 10, 12 and 20. What is the "
         "fourth?",
         "Definition: average = sum / count, so the sum is 4 x 15 = 60.\n"
         "Fourth = 60 - (10 + 12 + 20) = 60 - 42 = 18.\n"
         "The fourth number is \\boxed{18}.",
         "18"),
        ("A shirt bought for $40 is sold at a profit of 25%. What is the selling price?",
         "Definition: profit percent = profit / cost x 100, so profit = 0.25 x 40 = $10.\n"
         "Selling price = cost + profit = 40 + 10 = $50.\n"
         "The price is \\boxed{50} dollars.",
         "50"),
    ),
    _h(
        "persevere", "Determination, hope, success",
        "If the first attempt does not lead to the answer, do not stop: say why it failed, "
        "adjust the approach, and try again until the answer is found and checked.",
        ("Find a number that leaves remainder 1 when divided by 2, 3 and 4, and is divisible "
         "by 5.",
         "First try: numbers of the form 12k + 1: 13, 25. 13 is not divisible by 5, try on.\n"
         "25: 25 / 2 leaves 1, 25 / 3 leaves 1, 25 / 4 leaves 1, and 25 / 5 = 5.\n"
         "The number is \\boxed{25}.",
         "25"),
        ("Split 17 into two whole numbers whose product is 72.",
         "Try 10 and 7: product 70, too small. Try 9 and 8: product 72.\n"
         "The pair is 9 and 8; the larger is \\boxed{9}.",
         "9"),
    ),
    _h(
        "diagnosis", "Diagnosis: find where it goes wrong",
        "When a first answer fails a check, locate the exact step where it went wrong (a "
        "misread clause, a wrong operation), fix that step and recompute from there.",
        ("A phone plan costs $20 a month plus $0.10 per minute over 300 minutes. Jo used 420 "
         "minutes. What is her bill?",
         "First attempt: 20 + 0.10 x 420 = $62. Check: the first 300 minutes are included, so "
         "this charged them twice: the error is in the minutes counted.\n"
         "Fix: extra minutes = 420 - 300 = 120; bill = 20 + 0.10 x 120 = $32.\n"
         "The bill is \\boxed{32} dollars.",
         "32"),
        ("A price rises 10% and then falls 10%. Starting at $200, what is the final price?",
         "First attempt: +10% then -10% cancel, $200. Check: the fall applies to the new price, "
         "not the old one: that is where it went wrong.\n"
         "Fix: 200 x 1.1 = 220; 220 x 0.9 = 198.\n"
         "The final price is \\boxed{198} dollars.",
         "198"),
    ),
    _h(
        "make_table", "Figures and tables",
        "Organise the data in a small table (rows for the objects, columns for the quantities) "
        "so that the missing entry and the relation that fills it become visible.",
        ("Apples cost $3 per kg and pears $4 per kg. Ben buys 2 kg of apples and 3 kg of pears. "
         "How much does he pay?",
         "Table: fruit | kg | price per kg | cost\n"
         "apples | 2 | 3 | 6\n"
         "pears | 3 | 4 | 12\n"
         "Total cost column: 6 + 12 = 18.\n"
         "He pays \\boxed{18} dollars.",
         "18"),
        ("Liz is 4 years older than Max. In 3 years their ages will add up to 30. How old is "
         "Max now?",
         "Table: person | now | in 3 years\n"
         "Max | m | m + 3\n"
         "Liz | m + 4 | m + 7\n"
         "Last column: (m + 3) + (m + 7) = 30, so 2m = 20 and m = 10.\n"
         "Max is \\boxed{10}.",
         "10"),
    ),
    _h(
        "seen_before", "Have you seen it before?",
        "Ask whether you have met this problem, or the same problem in another dress; if so, "
        "name the type (rate, mixture, ages, work, percentage) and use the method that solves it.",
        ("Two workers can paint a fence in 6 hours and 3 hours alone. How long do they take "
         "together?",
         "Seen before: a joint-work problem; add the rates.\n"
         "Rates: 1/6 + 1/3 = 1/6 + 2/6 = 1/2 fence per hour.\n"
         "Time: 1 / (1/2) = 2 hours.\n"
         "Together they take \\boxed{2} hours.",
         "2"),
        ("How many liters of water must be added to 10 liters of 30% juice to make 20% juice?",
         "Seen before: a dilution problem; the amount of pure juice stays the same.\n"
         "Pure juice: 0.3 x 10 = 3 liters. At 20% it must be in 3 / 0.2 = 15 liters.\n"
         "Water to add: 15 - 10 = 5 liters.\n"
         "Add \\boxed{5} liters.",
         "5"),
    ),
    _h(
        "solved_before", "Here is a problem related to yours and solved before",
        "Take a problem of the same kind whose solution you know, and reuse its method or its "
        "result step for step on the new data.",
        ("Solved before: 4 machines make 100 parts in 5 hours. Now: how many parts do 6 "
         "machines make in 8 hours?",
         "From the solved problem: one machine makes 100 / (4 x 5) = 5 parts per hour.\n"
         "Same method, new data: 6 x 8 x 5 = 240 parts.\n"
         "They make \\boxed{240} parts.",
         "240"),
        ("A problem solved before: a 10% discount on $50 saves $5. Now: what do you pay for a "
         "$80 jacket with a 15% discount?",
         "Same method: saving = 0.15 x 80 = $12.\n"
         "Price = 80 - 12 = $68.\n"
         "You pay \\boxed{68} dollars.",
         "68"),
    ),
    _h(
        "heuristic_reasoning", "Heuristic reasoning: plausible first, then certain",
        "First reach a plausible answer by a quick estimate or rough argument; then derive the "
        "exact answer properly, and compare the two.",
        ("A runner covers 42 km in 3.5 hours. What is her average speed in km/h?",
         "Plausible: about 40 km in about 4 hours, so around 10-12 km/h.\n"
         "Exact: 42 / 3.5 = 12 km/h, in line with the estimate.\n"
         "Her speed is \\boxed{12} km/h.",
         "12"),
        ("A crate holds 48 bottles. How many crates are needed for 1,000 bottles?",
         "Plausible: 1000 / 50 = 20, so about 20 crates, a bit more since crates hold less than "
         "50.\n"
         "Exact: 48 x 20 = 960 < 1000 and 48 x 21 = 1008 >= 1000.\n"
         "\\boxed{21} crates are needed.",
         "21"),
    ),
    _h(
        "simpler_problem", "If you cannot solve the proposed problem",
        "Solve an easier problem first: the same problem with smaller numbers, or with one "
        "condition fewer; then carry the method over to the problem proposed.",
        ("How many handshakes happen when 12 people each shake hands once with every other?",
         "Easier first: 3 people give 3 handshakes, 4 people give 6 = 4 x 3 / 2.\n"
         "Method: each person shakes n - 1 hands and each handshake is counted twice.\n"
         "For 12: 12 x 11 / 2 = 66.\n"
         "There are \\boxed{66} handshakes.",
         "66"),
        ("A ladder has rungs numbered 1 to 40. What is the sum of all rung numbers?",
         "Easier first: 1 to 4 gives 10 = 4 x 5 / 2 (pair 1+4, 2+3).\n"
         "Same pairing for 1 to 40: 20 pairs of 41, i.e. 40 x 41 / 2 = 820.\n"
         "The sum is \\boxed{820}.",
         "820"),
    ),
    _h(
        "inventors_paradox", "Inventor's paradox",
        "The more general problem may be easier to solve: replace the particular question by a "
        "general one (any number of items, any price), solve that, then substitute.",
        ("What is the sum 2 + 4 + 6 + ... + 100?",
         "General problem: the sum of the first n even numbers is n(n + 1).\n"
         "Here n = 50: 50 x 51 = 2550.\n"
         "The sum is \\boxed{2550}.",
         "2550"),
        ("A number is increased by 20% and the result decreased by 20%. If it started at 250, "
         "what is it now?",
         "General problem: any x becomes x x 1.2 x 0.8 = 0.96x.\n"
         "Substitute x = 250: 0.96 x 250 = 240.\n"
         "It is now \\boxed{240}.",
         "240"),
    ),
    _h(
        "satisfy_condition", "Is it possible to satisfy the condition?",
        "Ask whether the condition is sufficient to determine the unknown, insufficient, or "
        "more than sufficient; count the unknowns and the independent relations before solving.",
        ("Adult tickets cost $8 and child tickets $5. 40 tickets were sold for $260. How many "
         "adult tickets were sold?",
         "Two unknowns (a, c) and two relations, so the condition suffices.\n"
         "a + c = 40 and 8a + 5c = 260. Then 8a + 5(40 - a) = 260, so 3a = 60 and a = 20.\n"
         "\\boxed{20} adult tickets were sold.",
         "20"),
        ("The sum of two numbers is 50 and their difference is 14. What is the larger number?",
         "Two unknowns, two independent relations: the condition determines them.\n"
         "Adding: 2 x larger = 50 + 14 = 64, so the larger is 32.\n"
         "The larger number is \\boxed{32}.",
         "32"),
    ),
    _h(
        "lemma", "Lemma: a helping result first",
        "Establish a helping result first (a unit rate, a common total, a conversion), state "
        "it clearly, then use it to reach the answer.",
        ("A printer prints 30 pages in 2 minutes. How long does it take to print 375 pages?",
         "Lemma: the printer prints 30 / 2 = 15 pages per minute.\n"
         "Using the lemma: 375 / 15 = 25 minutes.\n"
         "It takes \\boxed{25} minutes.",
         "25"),
        ("How many seconds are there in 2.5 hours?",
         "Lemma: one hour has 60 x 60 = 3600 seconds.\n"
         "Using it: 2.5 x 3600 = 9000 seconds.\n"
         "There are \\boxed{9000} seconds.",
         "9000"),
    ),
    _h(
        "mastery", "Pedantry and mastery",
        "Apply rules with judgment, not mechanically: choose the approach that fits this "
        "problem, and say why the rule applies here.",
        ("What is 25 x 48?",
         "Rather than long multiplication, use what fits: 25 x 4 = 100, and 48 = 4 x 12.\n"
         "25 x 48 = 100 x 12 = 1200.\n"
         "The product is \\boxed{1200}.",
         "1200"),
        ("What is 15% of 60?",
         "The rule 'percent x amount' applies; 15% is 10% plus 5%, easier to compute.\n"
         "10% of 60 = 6; 5% of 60 = 3; together 9.\n"
         "It is \\boxed{9}.",
         "9"),
    ),
    _h(
        "practical_problem", "Practical problems: realistic data and rounding",
        "In a practical problem, keep the real situation in view: whole objects cannot be "
        "split, partial containers must still be bought, and the answer must be rounded the way "
        "the situation requires.",
        ("A wall needs 23 square meters of paint and one can covers 5 square meters. How many "
         "cans must be bought?",
         "23 / 5 = 4.6 cans; a part of a can cannot be bought, so round up.\n"
         "\\boxed{5} cans must be bought.",
         "5"),
        ("A bus carries 45 people. How many buses are needed for 200 people?",
         "200 / 45 = 4.44...; the remaining people still need a bus, so round up to 5.\n"
         "\\boxed{5} buses are needed.",
         "5"),
    ),
    _h(
        "problem_to_find", "Problems to find: unknown, data, condition",
        "Name the three principal parts before anything else: the unknown (what is asked), "
        "the data (what is given), and the condition linking them; then solve.",
        ("A garden is 12 m long and 7 m wide. A path of width 1 m runs around the outside. What "
         "is the area of the path?",
         "Unknown: area of the path. Data: 12 m, 7 m, width 1 m. Condition: the path surrounds "
         "the garden.\n"
         "Outer rectangle: 14 x 9 = 126. Garden: 12 x 7 = 84. Path: 126 - 84 = 42.\n"
         "The path has an area of \\boxed{42} square meters.",
         "42"),
        ("Kim buys 3 shirts at the same price and pays with $100, getting $28 back. What does "
         "one shirt cost?",
         "Unknown: price of a shirt. Data: 3 shirts, $100 paid, $28 change. Condition: 3 x "
         "price = 100 - 28.\n"
         "3 x price = 72, price = 24.\n"
         "One shirt costs \\boxed{24} dollars.",
         "24"),
    ),
    _h(
        "problem_to_prove", "Problems to prove: hypothesis and conclusion",
        "When the task is to show that something holds, separate what is assumed from what is "
        "to be shown, and connect them by steps each justified by the previous ones; a "
        "numerical question can then be answered from the proved statement.",
        ("Show that the sum of three consecutive whole numbers is divisible by 3, then give "
         "the sum for 33, 34, 35 divided by 3.",
         "Hypothesis: the numbers are n, n + 1, n + 2. Conclusion to show: 3 divides the sum.\n"
         "Sum = 3n + 3 = 3(n + 1): divisible by 3, and the sum / 3 is the middle number.\n"
         "For 33, 34, 35 the sum / 3 is 34.\n"
         "The result is \\boxed{34}.",
         "34"),
        ("Show that the product of two odd numbers is odd, then decide the remainder of "
         "13 x 27 when divided by 2.",
         "Hypothesis: a = 2k + 1, b = 2m + 1. Conclusion: ab is odd.\n"
         "ab = 4km + 2k + 2m + 1 = 2(2km + k + m) + 1, which is odd.\n"
         "So 13 x 27 = 351 leaves remainder 1.\n"
         "The remainder is \\boxed{1}.",
         "1"),
    ),
    _h(
        "signs_of_progress", "Signs of progress",
        "After each step ask whether it brought you closer to the unknown: does it use a datum "
        "not used before, or shrink what is still missing? Keep steps that do, drop those that "
        "do not.",
        ("A pool fills in 10 hours with one pipe. A second pipe alone fills it in 15 hours. "
         "How many hours with both?",
         "Step: rates 1/10 and 1/15 per hour (progress: both data used).\n"
         "Step: combined rate 1/10 + 1/15 = 3/30 + 2/30 = 1/6 (progress: one rate left).\n"
         "Time = 6 hours.\n"
         "It takes \\boxed{6} hours.",
         "6"),
        ("Eva has 3 times as many stamps as Raj. Together they have 64. How many does Eva "
         "have?",
         "Step: write Eva = 3 x Raj (uses the first datum).\n"
         "Step: 4 x Raj = 64 (uses the second), so Raj = 16: only Eva is missing.\n"
         "Eva = 3 x 16 = 48.\n"
         "Eva has \\boxed{48} stamps.",
         "48"),
    ),
    _h(
        "puzzle", "Puzzles: read every word",
        "Read the wording literally and slowly; puzzles hide the difficulty in a word (each, "
        "other, between, every, more than) that a quick reading skips.",
        ("A fence is 30 m long with a post every 5 m, including both ends. How many posts are "
         "there?",
         "'Including both ends': the 30 m has 30 / 5 = 6 gaps, and posts are one more than "
         "gaps.\n"
         "Posts: 6 + 1 = 7.\n"
         "There are \\boxed{7} posts.",
         "7"),
        ("A log is cut into 5 pieces; each cut takes 3 minutes. How long does the cutting "
         "take?",
         "Read carefully: 5 pieces need only 4 cuts.\n"
         "Time: 4 x 3 = 12 minutes.\n"
         "It takes \\boxed{12} minutes.",
         "12"),
    ),
    _h(
        "redundant_data", "Redundant data",
        "Sort the data into what the question needs and what it does not; set the extra data "
        "aside explicitly so that they do not slip into the computation.",
        ("A 40-seat bus leaves at 8:00 with 32 passengers, travels at 60 km/h and arrives at "
         "10:30. How far did it travel?",
         "Needed: the speed and the travel time. Not needed: seats and passengers.\n"
         "Time: 8:00 to 10:30 = 2.5 hours. Distance: 60 x 2.5 = 150 km.\n"
         "It travelled \\boxed{150} km.",
         "150"),
        ("Nina, who is 11, buys 4 books at $7 each on a Tuesday with a $50 note. How much "
         "change does she get?",
         "Needed: 4 books, $7 each, $50 paid. Not needed: her age and the day.\n"
         "Cost: 4 x 7 = $28. Change: 50 - 28 = $22.\n"
         "She gets \\boxed{22} dollars back.",
         "22"),
    ),
    _h(
        "routine_problem", "Routine problem",
        "Recognise a standard exercise (a unit conversion, a percentage, a proportion) and "
        "apply the standard procedure directly and cleanly.",
        ("Convert 3.75 kilometers to meters.",
         "Routine conversion: 1 km = 1000 m.\n"
         "3.75 x 1000 = 3750.\n"
         "It is \\boxed{3750} meters.",
         "3750"),
        ("If 6 oranges cost $4.50, how much do 10 oranges cost?",
         "Routine proportion: unit price 4.50 / 6 = $0.75.\n"
         "10 x 0.75 = $7.50.\n"
         "They cost \\boxed{7.5} dollars.",
         "7.5"),
    ),
    _h(
        "rules_of_discovery", "Rules of discovery: try more than one way in",
        "There is no fixed rule that always works: try a few different ways into the problem "
        "(guessing, an equation, a picture) and keep going with the one that makes progress.",
        ("A number plus its half plus its third equals 44. What is the number?",
         "Way 1, guessing: 20 gives 20 + 10 + 6.67, not whole; a multiple of 6 is better.\n"
         "Way 2, equation: x(1 + 1/2 + 1/3) = 44, so x x 11/6 = 44 and x = 24.\n"
         "Check: 24 + 12 + 8 = 44.\n"
         "The number is \\boxed{24}.",
         "24"),
        ("Chickens and rabbits in a yard have 20 heads and 56 legs. How many rabbits are "
         "there?",
         "Way 1, picture: give every animal 2 legs: 40 legs, 16 legs are left over.\n"
         "Each rabbit has 2 extra legs, so 16 / 2 = 8 rabbits.\n"
         "Check with an equation: 8 x 4 + 12 x 2 = 32 + 24 = 56.\n"
         "There are \\boxed{8} rabbits.",
         "8"),
    ),
    _h(
        "rules_of_style", "Rules of style: say it clearly, once",
        "Have something to say, then say it: write the solution as a short sequence of clear "
        "statements, each with its reason, no repetition and no loose ends.",
        ("A movie starts at 7:45 pm and lasts 135 minutes. When does it end, in minutes after "
         "7:00 pm?",
         "The movie starts 45 minutes after 7:00 pm.\n"
         "It ends 45 + 135 = 180 minutes after 7:00 pm, that is at 10:00 pm.\n"
         "It ends \\boxed{180} minutes after 7:00 pm.",
         "180"),
        ("Each of 7 teams has 11 players and 2 coaches. How many people are there?",
         "Each team has 11 + 2 = 13 people.\n"
         "Seven teams have 7 x 13 = 91 people.\n"
         "There are \\boxed{91} people.",
         "91"),
    ),
    _h(
        "set_aside", "Subconscious work: set a part aside",
        "When one part resists, set it aside, finish everything else, and come back to it with "
        "the rest solved; the finished parts often make the hard part easy.",
        ("A shop sells 3 kinds of juice. Orange sells 40 bottles, apple 25 more than orange, "
         "and grape as many as the other two together minus 15. How many bottles in total?",
         "Set grape aside; the rest first: orange 40, apple 40 + 25 = 65.\n"
         "Back to grape, now easy: 40 + 65 - 15 = 90.\n"
         "Total: 40 + 65 + 90 = 195.\n"
         "They sell \\boxed{195} bottles.",
         "195"),
        ("A train has 8 cars with 64 seats each, except the first car, which has 40 seats. How "
         "many seats are there?",
         "Set the first car aside: 7 ordinary cars have 7 x 64 = 448 seats.\n"
         "Back to the first car: add its 40 seats: 448 + 40 = 488.\n"
         "There are \\boxed{488} seats.",
         "488"),
    ),
    _h(
        "terms_old_new", "Terms, old and new",
        "Translate the problem's terms into other terms that are easier to compute with (a "
        "dozen into 12, 'per cent' into hundredths, 'twice as fast' into half the time), or "
        "introduce a new term that names a useful quantity.",
        ("A baker sells 7 dozen rolls and 3 dozen muffins. How many items is that?",
         "New terms: a dozen = 12, so 7 dozen = 84 and 3 dozen = 36.\n"
         "Total: 84 + 36 = 120 items.\n"
         "That is \\boxed{120} items.",
         "120"),
        ("Walking, Lia takes 36 minutes to school; cycling is three times as fast. How many "
         "minutes does cycling take?",
         "New term: three times as fast means a third of the time.\n"
         "36 / 3 = 12 minutes.\n"
         "Cycling takes \\boxed{12} minutes.",
         "12"),
    ),
    _h(
        "test_by_dimension", "Test by dimension",
        "Attach units to every quantity and carry them through the computation; the answer "
        "must come out in the unit asked for, which checks the choice of operations.",
        ("A car travels at 72 km/h. How many meters does it travel in one second?",
         "72 km/h = 72,000 m / 3600 s.\n"
         "Units: m / s, as asked. 72000 / 3600 = 20.\n"
         "It travels \\boxed{20} meters per second.",
         "20"),
        ("Water flows at 12 liters per minute. How many hours does it take to fill 1,440 "
         "liters?",
         "liters / (liters per minute) = minutes: 1440 / 12 = 120 minutes.\n"
         "minutes / (minutes per hour) = hours: 120 / 60 = 2 hours.\n"
         "It takes \\boxed{2} hours.",
         "2"),
    ),
    _h(
        "proverbs", "Wisdom of proverbs: look before you leap",
        "Use the plain sense of problem solving: understand the question before answering it, "
        "plan before computing, and do not trust an answer you have not checked.",
        ("A store marks a $60 item 'buy 2, get the third at half price'. How much do 3 items "
         "cost?",
         "Look before leaping: only the third item is discounted, not all three.\n"
         "Cost: 60 + 60 + 30 = $150.\n"
         "They cost \\boxed{150} dollars.",
         "150"),
        ("A snail climbs 3 m each day and slips 2 m each night in a 10 m well. On which day "
         "does it get out?",
         "Look before leaping: the answer is not 10 / 1 = 10 days, because on the last day it "
         "does not slip.\n"
         "After 7 days and nights it is at 7 m; on day 8 it climbs to 10 m and is out.\n"
         "It gets out on day \\boxed{8}.",
         "8"),
    ),
    _h(
        "intelligent_reader", "The intelligent reader: verify as you go",
        "Read your own solution as a critical reader would: after each line, verify that it "
        "follows and say so briefly, so that the final answer is checked step by step.",
        ("A box of 24 chocolates is shared: Ali takes a third, Bea a quarter of the rest. How "
         "many are left?",
         "Ali: 24 / 3 = 8 (verified: 8 x 3 = 24). Left: 16.\n"
         "Bea: a quarter of the rest, 16 / 4 = 4 (verified: of the rest, not of 24). Left: 12.\n"
         "\\boxed{12} chocolates are left.",
         "12"),
        ("A worker earns $18 an hour and works 7.5 hours a day for 4 days. What does he earn?",
         "Per day: 18 x 7.5 = 135 (verified: 18 x 7 = 126, plus 9).\n"
         "Four days: 4 x 135 = 540 (verified: 135 x 2 = 270, doubled).\n"
         "He earns \\boxed{540} dollars.",
         "540"),
    ),
    _h(
        "why_proofs", "Why proofs? Justify each claim",
        "Do not accept a step because it looks right: give the reason for each claim (a "
        "definition, a rule, a computation), so that the answer is certain and not only "
        "plausible.",
        ("Is 91 a prime number? Answer 1 for yes and 0 for no.",
         "It looks prime, but check the claim: 91 = 7 x 13 (7 x 13 = 91).\n"
         "So it has divisors other than 1 and itself and is not prime.\n"
         "The answer is \\boxed{0}.",
         "0"),
        ("How many degrees is each angle of a regular hexagon?",
         "Claim: the angles of a hexagon add to 720 degrees. Reason: a hexagon splits into 4 "
         "triangles from one vertex, 4 x 180 = 720.\n"
         "Regular means all 6 angles are equal: 720 / 6 = 120.\n"
         "Each angle is \\boxed{120} degrees.",
         "120"),
    ),
    _h(
        "mathematical_induction", "Mathematical induction",
        "To establish a rule for every n: check it for the first case, show that if it holds "
        "for n it holds for n + 1, then apply it to the case asked for.",
        ("What is the sum of the first 15 odd numbers, 1 + 3 + ... + 29?",
         "Rule: the sum of the first n odd numbers is n^2.\n"
         "Base: n = 1 gives 1 = 1^2. Step: if the sum is n^2, adding the next odd number "
         "2n + 1 gives n^2 + 2n + 1 = (n + 1)^2.\n"
         "For n = 15: 15^2 = 225.\n"
         "The sum is \\boxed{225}.",
         "225"),
        ("A row of tiles starts with 1 tile and each new row has 2 more than the row before. "
         "How many tiles are in row 12?",
         "Rule: row n has 2n - 1 tiles.\n"
         "Base: row 1 has 1. Step: if row n has 2n - 1, row n + 1 has 2n + 1 = 2(n + 1) - 1.\n"
         "Row 12: 2 x 12 - 1 = 23.\n"
         "Row 12 has \\boxed{23} tiles.",
         "23"),
    ),
    _h(
        "four_phases", "Modern heuristic: the four phases",
        "Go through the four phases explicitly: understand the problem, devise a plan, carry "
        "out the plan, look back at the result.",
        ("A car rental costs $30 a day plus $0.20 per km. Ola rents for 3 days and drives 250 "
         "km. What does she pay?",
         "Understand: total cost, daily fee plus distance fee.\n"
         "Plan: days x 30 plus km x 0.20.\n"
         "Carry out: 3 x 30 = 90; 250 x 0.20 = 50; total 140.\n"
         "Look back: both fees counted once, the amount is reasonable.\n"
         "She pays \\boxed{140} dollars.",
         "140"),
        ("A class of 28 students goes on a trip; each van seats 8. How many vans are needed?",
         "Understand: vans needed so that every student has a seat.\n"
         "Plan: divide and round up.\n"
         "Carry out: 28 / 8 = 3.5, so 4 vans.\n"
         "Look back: 3 vans seat only 24, 4 vans seat 32 >= 28.\n"
         "\\boxed{4} vans are needed.",
         "4"),
    ),
    _h(
        "keep_part_of_condition", "Keep only a part of the condition",
        "Drop a part of the condition for a moment and see how far the unknown is still "
        "determined (a list of candidates); then bring the dropped part back to pick the "
        "answer.",
        ("Find the smallest two-digit number whose digits add to 9 and that is divisible by 4.",
         "Keep only 'digits add to 9': 18, 27, 36, 45, 54, 63, 72, 81, 90.\n"
         "Bring back 'divisible by 4': 36 and 72 remain; the smallest is 36.\n"
         "The smallest such number is \\boxed{36}.",
         "36"),
        ("I have coins worth 30 cents, all 5-cent or 10-cent coins, and there are 4 coins. How "
         "many are 10-cent coins?",
         "Keep only 'worth 30 cents': (six 5s), (four 5s, one 10), (two 5s, two 10s), "
         "(three 10s).\n"
         "Bring back '4 coins': only two 5s and two 10s has 4 coins.\n"
         "There are \\boxed{2} ten-cent coins.",
         "2"),
    ),
    _h(
        "extreme_cases", "Consider extreme cases",
        "Look at the extreme cases (everything of one kind, the smallest or largest possible "
        "value) to bound the answer or to find it by adjusting from the extreme.",
        ("A jar has 5 red, 7 blue and 9 green marbles. How many must you draw blindly to be "
         "sure of getting 2 of the same color?",
         "Extreme (worst) case: the first draws are all different colors, 1 red, 1 blue, "
         "1 green.\n"
         "The next draw must repeat a color: 3 + 1 = 4.\n"
         "You must draw \\boxed{4} marbles.",
         "4"),
        ("A test has 20 questions; a right answer gives 5 points and a wrong one takes away 2. "
         "Dan answered all and scored 65. How many did he get right?",
         "Extreme case: all right gives 100 points.\n"
         "Each right answer turned wrong costs 5 + 2 = 7 points: (100 - 65) / 7 = 5 wrong.\n"
         "Right: 20 - 5 = 15.\n"
         "Dan got \\boxed{15} right.",
         "15"),
    ),
)

if len(CATALOG) != CATALOG_SIZE:  # the contract validates sweep.heuristicsCount with it
    raise ImportError(f"the heuristic catalog has {len(CATALOG)} entries but "
                      f"polya_trainer.spec.CATALOG_SIZE says {CATALOG_SIZE}: update both")

STAR = Heuristic(
    id=NONE_ID, name="No heuristic",
    description="Solve the problem directly, without a prescribed strategy.",
)
"""The "no heuristic" entry: the STaR arm and plain prompts."""

_BY_ID: dict[str, Heuristic] = {h.id: h for h in CATALOG}


def ids() -> list[str]:
    """Catalog ids, in order."""
    return [h.id for h in CATALOG]


def get(id: str) -> Heuristic:
    """A catalog heuristic (or STAR for "none") by id; KeyError if unknown."""
    if id == NONE_ID:
        return STAR
    try:
        return _BY_ID[id]
    except KeyError:
        raise KeyError(f"unknown heuristic {id!r}; known: {', '.join(_BY_ID)}") from None


def select(hspec: HeuristicsSpec) -> list[Heuristic]:
    """The heuristics a spec selects: catalog ones first (count or ids), then custom ones.

    ``count: n`` takes the first n catalog entries; a count beyond the catalog size is only
    valid when the custom heuristics (always all appended) make up the difference.
    """
    chosen: list[Heuristic] = []
    if hspec.ids:
        for i, hid in enumerate(hspec.ids):
            if hid not in _BY_ID:
                raise ValueError(f"heuristics.ids[{i}]: unknown heuristic {hid!r}; "
                                 f"known: {', '.join(_BY_ID)}")
            if any(h.id == hid for h in chosen):
                raise ValueError(f"heuristics.ids[{i}]: duplicate heuristic {hid!r}")
            chosen.append(_BY_ID[hid])
    else:
        n = hspec.selected_count()
        available = len(CATALOG) + len(hspec.custom)
        if n > available:
            raise ValueError(
                f"heuristics.count is {n} but only {len(CATALOG)} catalog heuristics"
                f" + {len(hspec.custom)} custom are available")
        chosen = list(CATALOG[:n])
    seen = {h.id for h in chosen}
    for i, c in enumerate(hspec.custom):
        if c.id == NONE_ID:
            raise ValueError(f"heuristics.custom[{i}].id: {NONE_ID!r} is reserved")
        if c.id in _BY_ID:
            raise ValueError(f"heuristics.custom[{i}].id: {c.id!r} is a catalog heuristic; "
                             "pick another id")
        if c.id in seen:
            raise ValueError(f"heuristics.custom[{i}].id: duplicate heuristic {c.id!r}")
        seen.add(c.id)
        chosen.append(Heuristic(
            c.id, c.name, c.description,
            tuple(Exemplar(e.question, e.solution, e.answer) for e in c.exemplars)))
    return chosen


def _ask(question: str) -> str:
    return f"{question.strip()}\n\n{ANSWER_REQUEST}"


def plain_messages(question: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages with the question only (STaR, SFT prompts, evaluation)."""
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": _ask(question)}]


def build_messages(
    heuristic: Heuristic,
    question: str,
    n_exemplars: int = 2,
    *,
    system: bool = True,
) -> list[dict[str, str]]:
    """Chat messages: the heuristic's instruction, exemplars as earlier turns, the question.

    With ``system=False`` the instruction is prepended to the first user turn instead (for
    chat templates without a system role). The "none" heuristic gives plain messages.
    """
    if heuristic.id == NONE_ID:
        return plain_messages(question)
    shots: Iterable[Exemplar] = heuristic.exemplars[:max(n_exemplars, 0)]
    turns: list[dict[str, str]] = []
    for ex in shots:
        turns += [{"role": "user", "content": _ask(ex.question)},
                  {"role": "assistant", "content": ex.solution}]
    turns.append({"role": "user", "content": _ask(question)})
    instruction = heuristic.instruction()
    if system:
        return [{"role": "system", "content": instruction}, *turns]
    turns[0] = {"role": "user", "content": f"{instruction}\n\n{turns[0]['content']}"}
    return turns
